# blindstore-gateway: the data-plane identity of the S3 gateway (AppRole `blindstore-gateway`).
#
# It wraps and unwraps per-object data keys (DEKs) under the tenant keys `hgw-t-<tenant>` and the
# data-subject keys `hgw-p-<tenant>-<id>`, seals and unseals S3 secret keys under `hgw-creds`,
# and nothing else: it cannot create, configure, rotate,
# read, export, back up, restore, trim or delete a key, nor rewrap or generate data keys; it signs
# with exactly one key, hgw-audit (audit-trail checkpoints), and computes HMACs with exactly one,
# hgw-subjects (data-subject digests).
# Everything not granted below is denied by default; the explicit denies at the end document
# intent and survive a careless grant added later to this policy.
#
# Checked against OpenBao 2.7 by tests/integration/test_least_privilege.py (deploy/openbao/
# provision.sh writes this file as policy `blindstore-gateway`). `allowed_parameters` names the
# top-level request fields the gateway sends (src/blindstore/keys/transit.py); any other field,
# `key_version` included, makes Transit answer 403. The items inside `batch_input` are not
# checked by OpenBao's ACLs: they carry `plaintext`/`ciphertext` + `context` only.

# Tenant keys: wrap DEKs. "update" only: encrypt on a missing hgw-t-* key needs "create"
# (OpenBao's existence check turns it into an upsert), so a typo or a deleted (shredded) tenant
# key is refused instead of silently re-created empty.
path "transit/encrypt/hgw-t-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"   = []
    "context"     = []
    "batch_input" = []
  }
}

# Data-subject (patient) keys: the first wrap under a new hgw-p-* key creates it by upsert
# ("create"), which needs `transit/config/keys disable_upsert=false` (provision.sh sets it).
# An upsert through encrypt always makes a non-exportable, non-backupable aes256-gcm96 key, and
# a derived one because every request carries a `context`. `type` and `convergent_encryption`
# (the only key settings encrypt accepts) are absent from the list, so the gateway cannot choose
# a weaker key; `key_version`, `nonce` and `associated_data` are not needed either.
# Residual: OpenBao makes the upserted key derived only when the request carries a context, and
# no ACL can require a field inside `batch_input`; blindstore always sends one, and the admin's
# key review (README) lists any hgw-p-* key with derived=false.
path "transit/encrypt/hgw-p-*" {
  capabilities = ["create", "update"]
  allowed_parameters = {
    "plaintext"   = []
    "context"     = []
    "batch_input" = []
  }
}

# Unwrap DEKs. `partial_failure_response_code` makes a batch with some refused items answer 200
# with per-item errors (one bad row must not fail its batch neighbours).
path "transit/decrypt/hgw-t-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"                    = []
    "context"                       = []
    "batch_input"                   = []
    "partial_failure_response_code" = []
  }
}
path "transit/decrypt/hgw-p-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"                    = []
    "context"                       = []
    "batch_input"                   = []
    "partial_failure_response_code" = []
  }
}

# S3 secret keys (src/blindstore/keys/credentials.py): the catalog stores them sealed under
# hgw-creds. The gateway seals new ones (admin API access keys; the clear secrets of an older
# catalog, at start) and unseals one on a credential-cache miss. "update" only: the key
# administrator creates hgw-creds (provision.sh, `blindstore tenants create`); the gateway can
# neither create nor upsert it.
path "transit/encrypt/hgw-creds" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"   = []
    "context"     = []
    "batch_input" = []
  }
}
path "transit/decrypt/hgw-creds" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"                    = []
    "context"                       = []
    "batch_input"                   = []
    "partial_failure_response_code" = []
  }
}

# Audit checkpoints (blindstore.audit): sign the chain's head with the ed25519 key hgw-audit.
# The exact path only (no "/<hash algorithm>" suffix), "update" only (sign never creates a key),
# and `input` is the only parameter (no key_version: always the latest version, no prehashing).
path "transit/sign/hgw-audit" {
  capabilities = ["update"]
  allowed_parameters = {
    "input" = []
  }
}

# Data-subject digests (blindstore.subjects): the catalog stores HMAC(hgw-subjects, SHA-256(id))
# so that a patient id cannot be recovered from a catalog copy by brute force. "update" on the
# exact path only (no "/<algorithm>" suffix: always sha2-256), `input` and the pinned
# `key_version` (1, so that a rotation never changes a stored digest) as the only parameters.
path "transit/hmac/hgw-subjects" {
  capabilities = ["update"]
  allowed_parameters = {
    "input"       = []
    "key_version" = []
  }
}

# Token hygiene: the gateway renews its own short-lived token, looks it up (ttl left) and
# revokes it on shutdown. Tokens are issued with token_no_default_policy=true, so these are
# the only token paths it has.
path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/revoke-self" { capabilities = ["update"] }

# Explicit denies (deny beats any capability granted on the same path by another policy).
path "transit/keys"         { capabilities = ["deny"] }  # list key names
path "transit/keys/*"       { capabilities = ["deny"] }  # create/read/config/rotate/trim/delete...
path "transit/export/*"     { capabilities = ["deny"] }  # key material out
path "transit/backup/*"     { capabilities = ["deny"] }  # key material out
path "transit/restore"      { capabilities = ["deny"] }  # key material in
path "transit/restore/*"    { capabilities = ["deny"] }
path "transit/rewrap/*"     { capabilities = ["deny"] }  # the rewrap job's identity
path "transit/datakey/*"    { capabilities = ["deny"] }  # DEKs are generated locally
# Signing: only hgw-audit (above). These denies are narrowed so as not to cover it (in OpenBao
# a deny wins over any grant on the same path); every other key name is refused by default.
path "transit/sign/hgw-sign*"    { capabilities = ["deny"] }  # certificates: the admin signs
path "transit/sign/hgw-t-*"      { capabilities = ["deny"] }  # tenant keys
path "transit/sign/hgw-p-*"      { capabilities = ["deny"] }  # data-subject keys
path "transit/sign/hgw-creds"    { capabilities = ["deny"] }  # the credentials key
path "transit/sign/hgw-audit/*"  { capabilities = ["deny"] }  # hash-algorithm variants
path "transit/verify/*"          { capabilities = ["deny"] }
# HMAC: only hgw-subjects (above); narrowed denies, as for signing.
path "transit/hmac/hgw-t-*"       { capabilities = ["deny"] }
path "transit/hmac/hgw-p-*"       { capabilities = ["deny"] }
path "transit/hmac/hgw-audit*"    { capabilities = ["deny"] }
path "transit/hmac/hgw-sign*"     { capabilities = ["deny"] }
path "transit/hmac/hgw-subjects/*" { capabilities = ["deny"] }  # hash-algorithm variants
path "transit/config/*"     { capabilities = ["deny"] }  # upsert switch, engine settings
path "transit/cache-config" { capabilities = ["deny"] }
