# blindstore-auditor: verifies crypto-shredding certificates and audit checkpoints signed with
# hgw-sign. It reads the public keys and calls verify; nothing else.
path "transit/keys/hgw-sign"   { capabilities = ["read"] }
path "transit/verify/hgw-sign" { capabilities = ["update"] }

path "auth/token/renew-self"  { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
