"""Data keys: the ``KeyWrapper`` protocol (``base``), OpenBao/Vault Transit (``transit``), the
pre-wrapped DEK pool (``pool``), the unwrap cache (``cache``), micro-batched unwraps
(``batching``), their composition used by the gateway (``service``), the key-access
justification every Transit call carries (``justification``) and an in-process fake for unit
tests (``memory``). Import the module you need: importing this package loads no I/O library.
"""
