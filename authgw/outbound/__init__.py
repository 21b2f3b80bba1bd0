"""Outbound webhooks: the bank's endpoints, their deliveries, and the ``/v1/webhooks`` API.

``endpoints`` holds what an endpoint is (its patterns, URL rule and secrets), ``deliveries``
the one interface to their state (``Webhooks``: what the API and the deliverer call), ``models``
the request and response models, ``api`` the blueprint. All of it lives in the ``{wh}`` slot,
changed only by the ``webhook_*`` scripts (``authgw.scripts``).
"""
