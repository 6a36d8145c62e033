# blindstore-rewrap: the identity of the rewrap job that runs after a key rotation
# (SECURITY-NOTES §2.7, AppRole `blindstore-rewrap`). Rewrap decrypts and re-encrypts inside
# OpenBao and never returns plaintext, so this identity never sees a DEK; it cannot decrypt,
# encrypt, rotate or configure anything.

# Rewrap wrapped DEKs to the latest key version, in batches, with the same derivation context.
# No `key_version`: the job only ever moves rows forward to the latest version, and a rewrap to
# an older version would be a downgrade.
path "transit/rewrap/hgw-t-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"                    = []
    "context"                       = []
    "batch_input"                   = []
    "partial_failure_response_code" = []
  }
}
path "transit/rewrap/hgw-p-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"                    = []
    "context"                       = []
    "batch_input"                   = []
    "partial_failure_response_code" = []
  }
}

# Read key metadata (latest_version, min_decryption_version): the job selects the catalog rows
# whose kek_version is below the latest version, and must know it before its first call. Reading
# a symmetric Transit key returns versions, timestamps and settings, never key material. The
# glob also matches sub-paths (hgw-t-x/rotate...), but those only take "update", not granted.
path "transit/keys/hgw-t-*" { capabilities = ["read"] }
path "transit/keys/hgw-p-*" { capabilities = ["read"] }

path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/revoke-self" { capabilities = ["update"] }

# Explicit denies, as for the gateway.
path "transit/decrypt/*"  { capabilities = ["deny"] }
path "transit/encrypt/*"  { capabilities = ["deny"] }
path "transit/datakey/*"  { capabilities = ["deny"] }
path "transit/export/*"   { capabilities = ["deny"] }
path "transit/backup/*"   { capabilities = ["deny"] }
path "transit/restore"    { capabilities = ["deny"] }
path "transit/restore/*"  { capabilities = ["deny"] }
path "transit/sign/*"     { capabilities = ["deny"] }
path "transit/config/*"   { capabilities = ["deny"] }
