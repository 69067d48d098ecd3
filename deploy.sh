#!/usr/bin/env bash
# deploy.sh: build the SRE Agent Runtime image and deploy it to Cloud Run with Terraform.
#
# Steps (each idempotent, safe to re-run):
#   1. enable the needed Google APIs
#   2. store the four secrets in Secret Manager (create if missing, else add a version)
#   3. create the Artifact Registry repository if missing
#   4. build and push the image with Cloud Build (`gcloud builds submit`: no local Docker)
#   5. terraform init, select the target's workspace
#   6. with --database: apply the Cloud SQL instance alone, then give the SQL user the password
#      stored in the database-url secret (generated the first time)
#   7. terraform apply
#   8. verify /health and /ops/status, print the webhook URL
#
# Secret values are only ever fed to gcloud on stdin: never in argv, never printed.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly TF_DIR="${SCRIPT_DIR}/terraform"
readonly SECRET_VARS=(LLM_API_KEY PAGERDUTY_API_TOKEN PAGERDUTY_ROUTING_KEY OPS_AUTH_TOKEN)
readonly REQUIRED_SECRET_VARS=(LLM_API_KEY PAGERDUTY_API_TOKEN PAGERDUTY_ROUTING_KEY)
readonly APIS=(run.googleapis.com secretmanager.googleapis.com artifactregistry.googleapis.com
  cloudbuild.googleapis.com iam.googleapis.com logging.googleapis.com monitoring.googleapis.com)
# --database: the Cloud SQL Admin API serves gcloud sql and Cloud Run's Cloud SQL connection.
readonly DATABASE_API=sqladmin.googleapis.com
# Names fixed by terraform/main.tf (the database, the secret) and by this script (the user).
readonly DB_USER=sre_agent DB_NAME=sre_agent DB_SECRET=database-url
readonly DB_TARGETS=(-target=google_sql_database_instance.state -target=google_sql_database.state)
# Optional CONTRACT §2 settings passed through to Terraform when set. SRE_PROMPT_PATH and
# INCIDENTS_DIR are left out on purpose: they are paths inside the image, and a local .env
# points them at ./ paths that do not exist there.
readonly PASSTHROUGH_VARS=(LLM_MODEL LLM_API_BASE_URL PAGERDUTY_ESCALATION_POLICY_ID
  PAGERDUTY_FROM_EMAIL PAGERDUTY_EVENTS_URL PAGERDUTY_API_URL SCALING_LIMITS
  MAX_CONCURRENT_ALERTS ALERT_QUEUE_TTL_SECONDS MAX_QUEUE_SIZE DEDUP_WINDOW_SECONDS RESOLVE_GRACE_SECONDS PAGERDUTY_AUTO_RESOLVE
  MAX_TOKENS_PER_INCIDENT MAX_TOKENS_PER_HOUR AGENT_MAX_TURNS AGENT_TIMEOUT_SECONDS AGENT_MODE
  APPROVAL_TIMEOUT_SECONDS PUBLIC_URL CONSOLE_IDENTITY_HEADER RUN_LEASE_SECONDS
  TOOL_OUTPUT_MAX_CHARS MAX_TOOL_CALLS_PER_TURN PAGERDUTY_MAX_EVENTS_PER_MINUTE WEBHOOK_MAX_BODY_BYTES SHUTDOWN_GRACE_SECONDS OPS_TIMEOUT_SECONDS
  GCP_LOGGING_URL GCP_MONITORING_URL LOG_LEVEL)
# Variables that <inputs-dir>/.env may set (anything else in it is ignored).
readonly ENV_FILE_VARS=("${SECRET_VARS[@]}" "${PASSTHROUGH_VARS[@]}" SERVICE_REGISTRY
  WEBHOOK_AUTH_TOKEN CLOUD_PROVIDER GCP_PROJECT_ID GCP_REGION AR_REPOSITORY IMAGE_TAG)

usage() {
  cat <<'EOF'
Usage: ./deploy.sh <inputs-dir> --gcp-project PROJECT --service-url URL [--region REGION]
                   [--database [--max-instances N] [--rotate-database-password]] [--dry-run]
       ./deploy.sh --help

Build the SRE Agent Runtime and deploy it to Cloud Run for the service named in
<inputs-dir>/scope.md ("**Target Repository:** my-service" or "Target Repository: my-service").

Options:
  --gcp-project P   GCP project to deploy into (required)
  --service-url URL base URL of the monitored service's /ops/* API (required); with the
                    scope.md name it forms SERVICE_REGISTRY unless SERVICE_REGISTRY is set
  --region R        Cloud Run / Artifact Registry region (default: $GCP_REGION or us-central1)
  --database        keep the runtime's state in Cloud SQL for PostgreSQL (STATE_BACKEND=postgres):
                    creates the instance <service>-db, the user sre_agent (password generated
                    once, kept in the database-url secret) and allows several instances.
                    Once used, keep passing it: the instance is protected from deletion.
  --max-instances N most Cloud Run instances (default 1); above 1 only with --database
  --rotate-database-password
                    with --database: a new password for sre_agent and a new database-url version
  --dry-run         print every command (prefixed "+ ", secrets masked); run nothing
  -h, --help        show this help

Environment (also read from <inputs-dir>/.env; the environment wins):
  LLM_API_KEY, PAGERDUTY_API_TOKEN, PAGERDUTY_ROUTING_KEY   required secrets
  OPS_AUTH_TOKEN      optional; generated (openssl rand -hex 32) if neither set nor stored yet
  SERVICE_REGISTRY    optional; default "<target>|<service-url>|false"
  CLOUD_PROVIDER      default gcp (enables the Cloud Logging/Monitoring tools)
  AR_REPOSITORY       Artifact Registry repository (default sre-agent)
  IMAGE_TAG           image tag (default: UTC timestamp)
  Any other CONTRACT §2 setting (LLM_MODEL, AGENT_MODE, ...) is passed to Terraform as-is.

Requires gcloud, terraform and curl (not for --dry-run).
EOF
}

# die MESSAGE [DETAIL...]: print the message, one indented line per detail, and exit 1.
die() {
  printf 'deploy.sh: error: %s\n' "$1" >&2
  shift
  (($# == 0)) || printf '  - %s\n' "$@" >&2
  exit 1
}

log() { printf '==> %s\n' "$*"; }
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }

# --- command execution ----------------------------------------------------------------------

DRY_RUN=0
DATABASE=0
ROTATE_DB_PASSWORD=0
MAX_INSTANCES=""

quote_args() {
  local arg out=()
  for arg in "$@"; do out+=("$(printf '%q' "$arg")"); done
  printf '%s' "${out[*]}"
}

# run CMD...: execute, or print it under --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '+ %s\n' "$(quote_args "$@")"
  else
    "$@"
  fi
}

# run_with_secret VALUE CMD...: feed VALUE to CMD on stdin (printf is a builtin, so the value
# is in no process's argv); under --dry-run print the command with the value masked.
run_with_secret() {
  local value=$1
  shift
  if ((DRY_RUN)); then
    printf '+ %s | %s\n' "printf '%s' '****'" "$(quote_args "$@")"
  else
    printf '%s' "$value" | "$@"
  fi
}

# --- inputs ---------------------------------------------------------------------------------

INPUTS_DIR=""
PROJECT=""
SERVICE_URL=""
REGION="" # --region, else $GCP_REGION (environment or .env), else us-central1

parse_args() {
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1 ;;
      --database) DATABASE=1 ;;
      --rotate-database-password) ROTATE_DB_PASSWORD=1 ;;
      --gcp-project | --service-url | --region | --max-instances)
        (($# >= 2)) || die "$1 needs a value (see --help)"
        set_option "$1" "$2"
        shift
        ;;
      --gcp-project=* | --service-url=* | --region=* | --max-instances=*) set_option "${1%%=*}" "${1#*=}" ;;
      -*) die "unknown option: $1 (see --help)" ;;
      *)
        [[ -z $INPUTS_DIR ]] || die "unexpected argument: $1 (see --help)"
        INPUTS_DIR=$1
        ;;
    esac
    shift
  done
}

set_option() {
  case $1 in
    --gcp-project) PROJECT=$2 ;;
    --service-url) SERVICE_URL=${2%/} ;;
    --region) REGION=$2 ;;
    --max-instances) MAX_INSTANCES=$2 ;;
  esac
}

# Print the value of the "Target Repository" field of a scope.md, or nothing.
read_target_repository() {
  local line value
  local re='^[[:space:]>*+-]*(\*\*|__)?Target[[:space:]]+Repository(\*\*|__)?[[:space:]]*:[[:space:]]*(\*\*|__)?[[:space:]]*(.*)$'
  shopt -s nocasematch
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ $re ]]; then
      value=${BASH_REMATCH[4]}
      break
    fi
  done <"$1"
  shopt -u nocasematch
  value=${value:-}
  value=${value//\`/}
  value=${value%%\*\*}
  value=${value%%[[:space:]]*}
  # [name](url) -> name; org/name, URLs and .git suffixes -> name
  if [[ $value =~ ^\[([^]]+)\] ]]; then value=${BASH_REMATCH[1]}; fi
  value=${value%/}
  value=${value##*/}
  value=${value%.git}
  printf '%s' "$value"
}

# to_resource_name TEXT MAX: lowercase [a-z0-9-], starting with a letter, at most MAX chars;
# a cut name gets a short checksum suffix so two long names do not collide.
to_resource_name() {
  local name max=$2 sum
  name=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-' | tr -s '-')
  name=${name#-}
  [[ $name =~ ^[a-z] ]] || name="s-${name}"
  if ((${#name} > max)); then
    sum=$(printf '%s' "$name" | cksum | cut -c1-4)
    name="${name:0:max-5}-${sum}"
  fi
  name=${name%-}
  printf '%s' "$name"
}

# Load KEY=VALUE lines from a .env file for the allowed variables not already set.
load_env_file() {
  local file=$1 line key value
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line#"${line%%[![:space:]]*}"}
    [[ -z $line || $line == \#* ]] && continue
    line=${line#export }
    [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
    key=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    is_env_file_var "$key" || continue
    [[ -n ${!key:-} ]] && continue
    printf -v "$key" '%s' "$value"
    export "${key?}"
  done <"$file"
}

is_env_file_var() {
  local name
  for name in "${ENV_FILE_VARS[@]}"; do [[ $name == "$1" ]] && return 0; done
  return 1
}

TARGET=""
# Collect every problem with the inputs, then fail once listing them all.
check_inputs() {
  local problems=() name tool
  [[ -n $INPUTS_DIR ]] || problems+=("missing <inputs-dir> argument")
  if [[ -n $INPUTS_DIR && ! -d $INPUTS_DIR ]]; then
    problems+=("inputs dir not found: ${INPUTS_DIR}")
  elif [[ -n $INPUTS_DIR && ! -f $INPUTS_DIR/scope.md ]]; then
    problems+=("scope.md not found in ${INPUTS_DIR} (it names the target service)")
  elif [[ -n $INPUTS_DIR ]]; then
    TARGET=$(read_target_repository "$INPUTS_DIR/scope.md")
    [[ -n $TARGET ]] ||
      problems+=("no 'Target Repository' field in ${INPUTS_DIR}/scope.md (expected a line like '**Target Repository:** my-service')")
  fi
  [[ -n $PROJECT ]] || problems+=("missing --gcp-project")
  if [[ -z $SERVICE_URL ]]; then
    problems+=("missing --service-url")
  elif [[ ! $SERVICE_URL =~ ^https?://[^/?#]+ ]]; then
    problems+=("--service-url must be an http(s) URL with a host")
  fi
  for name in "${REQUIRED_SECRET_VARS[@]}"; do
    [[ -n ${!name:-} ]] || problems+=("environment variable ${name} is not set")
  done
  if [[ -n $MAX_INSTANCES && ! $MAX_INSTANCES =~ ^[1-9][0-9]*$ ]]; then
    problems+=("--max-instances must be a whole number >= 1")
  elif [[ -n $MAX_INSTANCES ]] && ((MAX_INSTANCES > 1 && !DATABASE)); then
    problems+=("--max-instances ${MAX_INSTANCES} needs --database: with the state in memory each instance keeps its own queue, so dedup, one run per service and MAX_CONCURRENT_ALERTS would no longer hold")
  fi
  ((!ROTATE_DB_PASSWORD || DATABASE)) || problems+=("--rotate-database-password needs --database")
  if ((!DRY_RUN)); then
    for tool in gcloud terraform curl; do
      command -v "$tool" >/dev/null 2>&1 || problems+=("required tool not found on PATH: ${tool}")
    done
  fi
  ((${#problems[@]} == 0)) || die "cannot deploy (${#problems[@]} problem(s)):" "${problems[@]}"
}

# --- steps ----------------------------------------------------------------------------------

generate_token() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32
  else
    python3 -c 'import secrets; print(secrets.token_hex(32))'
  fi
}

# ensure_secret NAME VAR: create the secret from $VAR, or add a version if it exists.
ensure_secret() {
  local name=$1 var=$2 value
  value=${!var:-}
  if ((DRY_RUN)); then
    run gcloud secrets describe "$name" --project "$PROJECT"
    if [[ -z $value ]]; then
      printf '# %s not set: if %s does not exist, a token is generated (openssl rand -hex 32)\n' "$var" "$name"
      printf '# and stored; an existing %s is kept unchanged.\n' "$name"
    fi
    printf '# if %s does not exist:\n' "$name"
    run_with_secret "$value" gcloud secrets create "$name" --project "$PROJECT" \
      --replication-policy=automatic --data-file=-
    printf '# if it exists:\n'
    run_with_secret "$value" gcloud secrets versions add "$name" --project "$PROJECT" --data-file=-
    return
  fi
  if gcloud secrets describe "$name" --project "$PROJECT" >/dev/null 2>&1; then
    if [[ -z $value ]]; then
      log "secret ${name}: exists, ${var} not set: keeping the stored value"
      return
    fi
    log "secret ${name}: adding a new version"
    run_with_secret "$value" gcloud secrets versions add "$name" --project "$PROJECT" --data-file=- >/dev/null
  else
    if [[ -z $value ]]; then
      log "secret ${name}: ${var} not set: generating one"
      value=$(generate_token)
    fi
    log "secret ${name}: creating"
    run_with_secret "$value" gcloud secrets create "$name" --project "$PROJECT" \
      --replication-policy=automatic --data-file=- >/dev/null
  fi
}

# database_url PASSWORD INSTANCE: the URL through Cloud Run's Cloud SQL socket (/cloudsql).
# The password is hex (generate_token), so it needs no escaping in a URL or in YAML.
database_url() {
  printf 'postgresql://%s:%s@/%s?host=/cloudsql/%s:%s:%s' "$DB_USER" "$1" "$DB_NAME" "$PROJECT" "$REGION" "$2"
}

# ensure_database_credentials INSTANCE: afterwards the SQL user sre_agent exists and its
# password is the one in the database-url secret. The password is generated once (or with
# --rotate-database-password) and stored before the user gets it; otherwise it is read back
# from the secret, so a re-run changes nothing and a run that stopped halfway is repaired.
# gcloud sql users takes the password only as a flag: it goes in a --flags-file on stdin.
ensure_database_credentials() {
  local instance=$1 password url users stored=""
  if ((DRY_RUN)); then
    print_database_credentials "$instance"
    return
  fi
  if gcloud secrets describe "$DB_SECRET" --project "$PROJECT" >/dev/null 2>&1; then
    stored=$(gcloud secrets versions access latest --secret "$DB_SECRET" --project "$PROJECT") ||
      warn "secret ${DB_SECRET} has no readable version: storing a new password"
  fi
  if [[ -n $stored ]] && ((!ROTATE_DB_PASSWORD)); then
    [[ $stored =~ ^postgresql://${DB_USER}:([0-9a-f]+)@/ ]] ||
      die "secret ${DB_SECRET} does not hold a URL made by deploy.sh; replace it with --rotate-database-password"
    password=${BASH_REMATCH[1]}
    log "database: keeping the password stored in ${DB_SECRET}"
  else
    password=$(generate_token)
    log "database: generated a new password for ${DB_USER}"
  fi
  url=$(database_url "$password" "$instance")
  if [[ $url != "$stored" ]]; then
    DB_URL_VALUE=$url ensure_secret "$DB_SECRET" DB_URL_VALUE
  fi
  users=$(gcloud sql users list --instance "$instance" --project "$PROJECT" --format 'value(name)')
  if grep -qx "$DB_USER" <<<"$users"; then
    log "database: setting the password of ${DB_USER}"
    run_with_secret "--password: \"${password}\"" gcloud sql users set-password "$DB_USER" \
      --instance "$instance" --project "$PROJECT" --flags-file=- >/dev/null
  else
    log "database: creating user ${DB_USER}"
    run_with_secret "--password: \"${password}\"" gcloud sql users create "$DB_USER" \
      --instance "$instance" --project "$PROJECT" --flags-file=- >/dev/null
  fi
}

print_database_credentials() {
  local instance=$1
  run gcloud secrets describe "$DB_SECRET" --project "$PROJECT"
  printf '# if %s exists (and no --rotate-database-password), its password is kept:\n' "$DB_SECRET"
  run gcloud secrets versions access latest --secret "$DB_SECRET" --project "$PROJECT"
  printf '# else a password is generated (openssl rand -hex 32) and DATABASE_URL stored:\n'
  printf '#   %s\n' "$(database_url '****' "$instance")"
  printf '# if %s does not exist:\n' "$DB_SECRET"
  run_with_secret '****' gcloud secrets create "$DB_SECRET" --project "$PROJECT" \
    --replication-policy=automatic --data-file=-
  printf '# if it exists:\n'
  run_with_secret '****' gcloud secrets versions add "$DB_SECRET" --project "$PROJECT" --data-file=-
  printf '# then the user %s gets that password (--password in a flags file on stdin):\n' "$DB_USER"
  run gcloud sql users list --instance "$instance" --project "$PROJECT" --format 'value(name)'
  printf '# if %s does not exist:\n' "$DB_USER"
  run_with_secret '****' gcloud sql users create "$DB_USER" --instance "$instance" \
    --project "$PROJECT" --flags-file=-
  printf '# if it exists:\n'
  run_with_secret '****' gcloud sql users set-password "$DB_USER" --instance "$instance" \
    --project "$PROJECT" --flags-file=-
}

ensure_repository() {
  local repo=$1
  if ((DRY_RUN)); then
    run gcloud artifacts repositories describe "$repo" --project "$PROJECT" --location "$REGION"
    printf '# if it does not exist:\n'
  elif gcloud artifacts repositories describe "$repo" --project "$PROJECT" --location "$REGION" >/dev/null 2>&1; then
    log "artifact registry ${repo}: exists"
    return
  fi
  run gcloud artifacts repositories create "$repo" --project "$PROJECT" --location "$REGION" \
    --repository-format=docker --description="SRE Agent Runtime images"
}

# Cloud Build with BuildKit on (the Dockerfile installs wheels through a bind mount). The
# upload honours .gcloudignore, or .gitignore when there is none, so .env never leaves here;
# the Docker build context is further cut down by .dockerignore.
build_image() {
  local image=$1 config_dir config
  if ((DRY_RUN)); then
    config_dir='/tmp/deploy.XXXXXX' # made by mktemp -d on a real run
  else
    config_dir=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: the path is known and fixed
    trap "rm -rf '${config_dir}'" EXIT
    cat >"${config_dir}/cloudbuild.yaml" <<'EOF'
steps:
  - name: gcr.io/cloud-builders/docker
    env: ["DOCKER_BUILDKIT=1"]
    args: ["build", "--tag", "${_IMAGE}", "."]
images: ["${_IMAGE}"]
EOF
  fi
  config="${config_dir}/cloudbuild.yaml"
  run gcloud builds submit "$SCRIPT_DIR" --project "$PROJECT" --config "$config" \
    --substitutions "_IMAGE=${image}"
}

readonly TF=(terraform "-chdir=${TF_DIR}")
TF_VARS=()

# terraform_vars IMAGE SERVICE ACCOUNT REGISTRY INSTANCE: set TF_VARS, the -var arguments.
terraform_vars() {
  local image=$1 service=$2 account=$3 registry=$4 instance=$5 name value
  TF_VARS=(-var "project_id=${PROJECT}" -var "region=${REGION}" -var "service_name=${service}"
    -var "service_account_id=${account}" -var "image=${image}" -var "service_registry=${registry}"
    -var "cloud_provider=${CLOUD_PROVIDER:-gcp}" -var "gcp_project_id=${GCP_PROJECT_ID:-$PROJECT}")
  if ((DATABASE)); then
    TF_VARS+=(-var "enable_database=true" -var "database_instance_name=${instance}")
  fi
  [[ -z $MAX_INSTANCES ]] || TF_VARS+=(-var "max_instances=${MAX_INSTANCES}")
  for name in "${PASSTHROUGH_VARS[@]}"; do
    value=${!name:-}
    [[ -z $value ]] || TF_VARS+=(-var "$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')=${value}")
  done
}

terraform_init() {
  run "${TF[@]}" init -input=false
  run "${TF[@]}" workspace select -or-create "$1"
}

# terraform_apply [ARG...]: apply with TF_VARS (and e.g. -target options).
terraform_apply() {
  run "${TF[@]}" apply -auto-approve -input=false "$@" "${TF_VARS[@]}"
}

# read_output VAR NAME: VAR := `terraform output -raw NAME` (a placeholder under --dry-run).
read_output() {
  local value
  if ((DRY_RUN)); then
    run terraform "-chdir=${TF_DIR}" output -raw "$2"
    value=${2^^}
  else
    value=$(terraform "-chdir=${TF_DIR}" output -raw "$2") # a failure stops the script
  fi
  printf -v "$1" '%s' "$value"
}

verify() {
  local url=$1 path
  for path in /health /ops/status; do
    run curl --fail --silent --show-error --max-time 10 --retry 10 --retry-delay 3 \
      --retry-all-errors "${url}${path}"
    ((DRY_RUN)) || printf '\n'
  done
}

main() {
  parse_args "$@"
  if [[ -n $INPUTS_DIR && -f $INPUTS_DIR/.env ]]; then load_env_file "$INPUTS_DIR/.env"; fi
  REGION=${REGION:-${GCP_REGION:-us-central1}}
  check_inputs
  [[ -z ${WEBHOOK_AUTH_TOKEN:-} ]] ||
    warn "WEBHOOK_AUTH_TOKEN is ignored: on Cloud Run webhooks use the ops-auth-token secret"

  local service account repo image registry url webhook instance apis=("${APIS[@]}")
  service=$(to_resource_name "sre-agent-${TARGET}" 49)
  instance="${service}-db"
  account=$(to_resource_name "sre-agent-${TARGET}" 30)
  repo=${AR_REPOSITORY:-sre-agent}
  image="${REGION}-docker.pkg.dev/${PROJECT}/${repo}/${service}:${IMAGE_TAG:-$(date -u +%Y%m%dT%H%M%SZ)}"
  registry=${SERVICE_REGISTRY:-"${TARGET}|${SERVICE_URL}|false"}

  ((DRY_RUN)) && log "dry run: nothing is executed"
  log "deploying ${service} (target ${TARGET}) to ${PROJECT}/${REGION}"

  log "enabling APIs"
  ((!DATABASE)) || apis+=("$DATABASE_API")
  run gcloud services enable "${apis[@]}" --project "$PROJECT"

  log "storing secrets in Secret Manager"
  ensure_secret llm-api-key LLM_API_KEY
  ensure_secret pagerduty-api-token PAGERDUTY_API_TOKEN
  ensure_secret pagerduty-routing-key PAGERDUTY_ROUTING_KEY
  ensure_secret ops-auth-token OPS_AUTH_TOKEN

  log "artifact registry"
  ensure_repository "$repo"

  log "building ${image}"
  build_image "$image"

  log "terraform init, workspace ${service}"
  terraform_vars "$image" "$service" "$account" "$registry" "$instance"
  terraform_init "$service"
  if ((DATABASE)); then
    # The SQL user can only be made on a running instance, and the service's first revision
    # needs the user's password in the database-url secret. So the instance (and its database)
    # is applied alone first, the credentials are set, then everything is applied. The
    # instance stays in Terraform, declared once; -target only orders the first apply.
    log "database: Cloud SQL instance ${instance} (the first time, this takes several minutes)"
    terraform_apply "${DB_TARGETS[@]}"
    ensure_database_credentials "$instance"
  fi

  log "terraform apply"
  terraform_apply

  read_output url service_url
  read_output webhook webhook_url
  log "verifying ${url}"
  verify "$url"

  log "deployed"
  printf 'Service URL: %s\n' "$url"
  printf 'Webhook URL: %s\n' "$webhook"
  printf 'Point GCP notification channels at the webhook URL with ?auth_token=<OPS_AUTH_TOKEN>;\n'
  printf 'read the token with: gcloud secrets versions access latest --secret=ops-auth-token --project %s\n' "$PROJECT"
}

main "$@"
