"""Default settings (``defaults.toml``) and the production server config (``gunicorn.conf.py``)."""
