# blindstore-auditor: verifies crypto-shredding certificates (signed with hgw-sign) and audit
# checkpoints (signed with hgw-audit by the gateway). It reads the public keys and calls verify;
# nothing else (`blindstore audit verify --vault-token-file`).
path "transit/keys/hgw-sign"    { capabilities = ["read"] }
path "transit/verify/hgw-sign"  { capabilities = ["update"] }
path "transit/keys/hgw-audit"   { capabilities = ["read"] }
path "transit/verify/hgw-audit" { capabilities = ["update"] }

path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
