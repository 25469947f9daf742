"""Admission webhooks: HardenedService validation, sidecar injection, their certificates.

- ``injection.py``  which Pods get the sidecar, and the JSON patch (pure)
- ``certs.py``      CA and serving certificate issue and rotation (pure)
- ``server.py``     the HTTPS AdmissionReview endpoints
- ``keeper.py``     the certificate's Secret, TLS context and caBundle (I/O)
- ``service.py``    all of it started and stopped with the operator
"""
