# blindstore-kms-admin: key administration (AppRole `blindstore-kms-admin`; in production a
# human or provisioning service behind MFA and a two-person procedure kept outside OpenBao).
# It creates, rotates, configures, trims, soft-deletes and deletes keys, and signs with hgw-sign
# (crypto-shredding certificates, audit checkpoints). It never encrypts, decrypts or rewraps
# data keys, and can never make a key exportable or backupable. `blindstore tenants create`
# runs under this identity (it creates the tenant key and the credentials key hgw-creds, and
# seals the tenant's first S3 secret key: encrypt under hgw-creds, never decrypt).
#
# "+" matches exactly one path segment: the mount is dedicated to blindstore. "*" would be a
# trailing prefix glob and also match ".../config", ".../trim" with the wrong parameter rules.

path "transit/keys" { capabilities = ["list"] }

# Create (OpenBao checks "update" for POST transit/keys/:name; writing an existing key is a
# no-op that returns it), read metadata, delete (only once deletion_allowed=true is configured).
# Parameter values are listed both as HCL booleans and strings: a JSON client sends true, the
# CLI's key=value form sends "true", and OpenBao compares them by type.
# Not enforceable here: that `derived` is present at all (required_parameters would also apply
# to reads); `blindstore tenants create` sends it and refuses a key without it.
path "transit/keys/+" {
  capabilities = ["update", "read", "delete"]
  allowed_parameters = {
    "type"                   = ["aes256-gcm96"]
    "derived"                = [true, "true"]
    "exportable"             = [false, "false"]
    "allow_plaintext_backup" = [false, "false"]
    "auto_rotate_period"     = []
  }
}

# The signing key: ed25519, never deleted (old certificates must stay verifiable); the exact
# path wins over "transit/keys/+". Reading it returns the public keys.
path "transit/keys/hgw-sign" {
  capabilities = ["update", "read"]
  allowed_parameters = {
    "type"                   = ["ed25519"]
    "exportable"             = [false, "false"]
    "allow_plaintext_backup" = [false, "false"]
    "auto_rotate_period"     = []
  }
}

# The audit checkpoint key: the same (never deleted: old checkpoints must stay verifiable). The
# administrator may read and rotate it but not sign with it: only the gateway signs checkpoints.
path "transit/keys/hgw-audit" {
  capabilities = ["update", "read"]
  allowed_parameters = {
    "type"                   = ["ed25519"]
    "exportable"             = [false, "false"]
    "allow_plaintext_backup" = [false, "false"]
    "auto_rotate_period"     = []
  }
}

path "transit/keys/+/rotate" { capabilities = ["update"] }

# Rotation and shredding settings; exportable/allow_plaintext_backup are absent (irreversible
# once set, they would let key material out).
path "transit/keys/+/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_decryption_version" = []
    "min_encryption_version" = []
    "deletion_allowed"       = []
    "auto_rotate_period"     = []
  }
}

# Per-version crypto-shredding.
path "transit/keys/+/trim" {
  capabilities = ["update"]
  allowed_parameters = { "min_available_version" = [] }
}

# OpenBao soft delete (DELETE .../soft-delete) and its undo, for a grace period before delete.
path "transit/keys/+/soft-delete"         { capabilities = ["delete"] }
path "transit/keys/+/soft-delete-restore" { capabilities = ["update"] }

# The upsert switch is set once by provision.sh (root/bootstrap); the admin may only read it.
path "transit/config/keys" { capabilities = ["read"] }

# Seal a new S3 secret key under hgw-creds (`blindstore tenants create` prints the secret once
# and stores it sealed). Encrypt only: the administrator can never unseal a stored secret, and
# this exact path wins over the "transit/encrypt/*" deny below for this key alone.
path "transit/encrypt/hgw-creds" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"   = []
    "context"     = []
    "batch_input" = []
  }
}

# Sign and verify with hgw-sign only.
path "transit/sign/hgw-sign"   { capabilities = ["update"] }
path "transit/verify/hgw-sign" { capabilities = ["update"] }

path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/revoke-self" { capabilities = ["update"] }

# Explicit denies: key material never leaves, data keys are the gateway's business.
path "transit/export/*"   { capabilities = ["deny"] }
path "transit/backup/*"   { capabilities = ["deny"] }
path "transit/restore"    { capabilities = ["deny"] }
path "transit/restore/*"  { capabilities = ["deny"] }
path "transit/encrypt/*"  { capabilities = ["deny"] }
path "transit/decrypt/*"  { capabilities = ["deny"] }
path "transit/rewrap/*"   { capabilities = ["deny"] }
path "transit/datakey/*"  { capabilities = ["deny"] }
