# hgw-gateway: the gateway's data-plane identity. It can wrap and unwrap data keys under the
# hgw- keys and nothing else: no key creation, rotation, export, backup, datakey or rewrap.
path "transit/encrypt/hgw-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "plaintext"   = []
    "context"     = []
    "batch_input" = []
    "reference"   = []
  }
}
path "transit/decrypt/hgw-*" {
  capabilities = ["update"]
  allowed_parameters = {
    "ciphertext"  = []
    "context"     = []
    "batch_input" = []
    "reference"   = []
  }
}
path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "transit/keys/*"    { capabilities = ["deny"] }
path "transit/export/*"  { capabilities = ["deny"] }
path "transit/backup/*"  { capabilities = ["deny"] }
path "transit/restore/*" { capabilities = ["deny"] }
path "transit/rewrap/*"  { capabilities = ["deny"] }
path "transit/datakey/*" { capabilities = ["deny"] }
