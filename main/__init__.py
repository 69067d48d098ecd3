"""The HTTP application. `create_app()` builds it; `uvicorn main:app` builds one lazily."""
