"""`python -m main`: serve the runtime with request deadlines (main/server.py)."""

from main.server import main

main()
