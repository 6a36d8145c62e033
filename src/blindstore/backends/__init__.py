"""Storage backends: opaque ciphertext blobs under gateway-chosen names.

``base`` holds the ``Backend`` protocol, ``ids`` the naming rules every backend enforces;
implementations live in their own modules (``local``, ``memory``) so that importing this package
loads no storage SDK.
"""
