"""The Kafka wire protocol: frames, request and response headers, the API version table, and
the glue to the ``kio`` codec (generated from Kafka's JSON message schemas).

Used by the broker (``logstore.broker``) and, later, by replica fetchers (``logstore.cluster``):
the same frames and the same codec serve clients and replicas.
"""
