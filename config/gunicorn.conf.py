"""Production server settings for ``authgw serve``; the CLI overrides bind and workers."""

# gevent: a worker serves many requests at once, switching only where one waits on Redis or
# the network, so a slow store call holds its own request, never the worker. Measured against
# gthread and sync in bench/ (docs/performance.md): less CPU per request and a shorter tail.
worker_class = "gevent"
# Requests one worker holds at once; beyond that, connections wait in the listen queue. A
# long-poll (GET /v1/challenges/{id}?wait=N) sleeps as a greenlet between its reads and holds
# one of these for up to 30 s, so there is room for a thousand waiters beside the traffic.
worker_connections = 1280
# Used only when --worker-class gthread is asked for.
threads = 4
# Each worker listens on its own SO_REUSEPORT socket and the kernel spreads new connections
# over them. With one shared socket, the worker that wakes first takes most of a client's
# kept-alive connections and the others idle (measured: half the throughput in some runs).
reuse_port = True
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


def post_worker_init(worker):
    """Once a worker has loaded the app: move everything loaded so far (Flask, the libraries,
    libphonenumber's metadata: about 75,000 objects) out of the garbage collector's sight. They
    live as long as the worker; left in view, every full collection walks them, about 15 ms in
    which the worker serves no request (measured), and that lands in the latency tail."""
    import gc

    gc.freeze()
