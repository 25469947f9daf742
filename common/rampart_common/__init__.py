"""What the operator and the sidecar both need, so neither reaches into the other.

``durations``: the one duration syntax of the CRD, the sidecar's settings and
every rendered manifest. ``sidecar_settings``: the sidecar's settings model,
which the sidecar loads and the operator validates ``spec.sidecar`` with and
generates the CRD's schema from. ``errors``: the error both raise for bad
settings. Nothing here imports either program (the import-linter contracts in
.importlinter hold it so).
"""
