"""Production server settings for ``authgw serve``; the CLI overrides bind and workers."""

# gthread: a few threads per worker keep a slow Redis call from stalling the worker.
worker_class = "gthread"
threads = 4
# Twilio gives a webhook 15 s in all; a request still running after 10 s is a fault.
timeout = 10
graceful_timeout = 10
keepalive = 5
# Bodies over 16 KiB are refused by the app (413); keep the header limits at their defaults.
accesslog = None
errorlog = "-"
loglevel = "info"
# The control socket would sit at one path per user, so two gateways on a host would clash;
# operations go through signals (TERM for a graceful stop, HUP to reload workers).
control_socket_disable = True
