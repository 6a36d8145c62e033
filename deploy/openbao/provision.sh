#!/usr/bin/env bash
# Provision an OpenBao (or Vault) server for blindstore: Transit mount, least-privilege policies,
# AppRole identities, the hgw-sign signing key, the hgw-creds credentials key and the key-access
# justification header.
#
# Idempotent: run it again after an upgrade of the policies. Each run issues a NEW secret_id per
# role (unless --no-secret-ids); older secret_ids stay valid until their TTL or until revoked.
#
# Needs the `bao` CLI (or `vault`, with BAO_CLI=vault) and, in the environment, BAO_ADDR and a
# token allowed to mount engines, write policies and configure auth: BAO_TOKEN (root, or a
# bootstrap admin token revoked afterwards). See deploy/openbao/README.md.
#
# Audit devices are NOT enabled here: OpenBao 2.x refuses to enable them over the API. Declare
# them in the server configuration (README.md shows the stanza); this script warns if none is.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: provision.sh [--out DIR] [--wrap-ttl TTL] [--no-secret-ids] [--key-prefix PREFIX]
                    [--mount PATH] [--bind-cidr CIDR[,CIDR...]] [--gateway-token-ttl TTL]
                    [--secret-id-ttl TTL]

  --out DIR            write <role>.role_id and <role>.secret_id (or <role>.secret_id.wrapped)
                       files, mode 0600, to DIR instead of printing them
  --wrap-ttl TTL       response-wrap each secret_id (e.g. 5m): the output is a single-use
                       wrapping token, unwrapped with `bao unwrap` by the service that uses it
  --no-secret-ids      configure everything, issue no secret_id (role_ids are still shown)
  --key-prefix PREFIX  Transit key name prefix, as vault.key_prefix (default hgw-)
  --mount PATH         Transit mount path, as vault.mount (default transit)
  --bind-cidr CIDRS    bind the gateway's secret_ids and tokens to these source networks
  --gateway-token-ttl  gateway token ttl (default 1h; renewable up to 24h, then log in again)
  --secret-id-ttl TTL  lifetime of issued secret_ids (default 0 = until revoked)
EOF
}

OUT=""
WRAP_TTL=""
ISSUE_SECRET_IDS=1
KEY_PREFIX="hgw-"
MOUNT="transit"
BIND_CIDR=""
GATEWAY_TOKEN_TTL="1h"
SECRET_ID_TTL="0"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --wrap-ttl) WRAP_TTL="$2"; shift 2 ;;
    --no-secret-ids) ISSUE_SECRET_IDS=0; shift ;;
    --key-prefix) KEY_PREFIX="$2"; shift 2 ;;
    --mount) MOUNT="$2"; shift 2 ;;
    --bind-cidr) BIND_CIDR="$2"; shift 2 ;;
    --gateway-token-ttl) GATEWAY_TOKEN_TTL="$2"; shift 2 ;;
    --secret-id-ttl) SECRET_ID_TTL="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "provision.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

# The policies name the mount and the prefix literally; substitution must stay a plain path.
if [[ ! "$KEY_PREFIX" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$ ]]; then
  echo "provision.sh: invalid --key-prefix $KEY_PREFIX" >&2; exit 2
fi
if [[ ! "$MOUNT" =~ ^[A-Za-z0-9_-][A-Za-z0-9_./-]*$ || "$MOUNT" == *..* ]]; then
  echo "provision.sh: invalid --mount $MOUNT" >&2; exit 2
fi

BAO="${BAO_CLI:-bao}"
command -v "$BAO" >/dev/null || { echo "provision.sh: $BAO not found on PATH" >&2; exit 1; }
: "${BAO_ADDR:=${VAULT_ADDR:-}}"
: "${BAO_TOKEN:=${VAULT_TOKEN:-}}"
if [[ -z "$BAO_ADDR" || -z "$BAO_TOKEN" ]]; then
  echo "provision.sh: set BAO_ADDR and BAO_TOKEN (root or bootstrap admin token)" >&2; exit 1
fi
export BAO_ADDR BAO_TOKEN VAULT_ADDR="$BAO_ADDR" VAULT_TOKEN="$BAO_TOKEN"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SIGN_KEY="${KEY_PREFIX}sign"
AUDIT_KEY="${KEY_PREFIX}audit"
CREDS_KEY="${KEY_PREFIX}creds"
SUBJECTS_KEY="${KEY_PREFIX}subjects"
JUSTIFICATION_HEADER="x-blindstore-justification"

log() { echo "provision: $*" >&2; }

# A policy file with the default mount and prefix replaced by the configured ones.
render_policy() {
  sed -e "s#\"transit/#\"${MOUNT}/#g" -e "s#hgw-#${KEY_PREFIX}#g" "$HERE/$1"
}

# 1. Transit, mounted only if missing (never re-tuned: it may hold every tenant key).
if "$BAO" read "sys/mounts/$MOUNT" >/dev/null 2>&1; then
  log "transit engine already mounted at $MOUNT/"
else
  "$BAO" secrets enable -path="$MOUNT" -description="blindstore key encryption keys" transit >/dev/null
  log "mounted transit at $MOUNT/"
fi

# 2. Upsert ON. The gateway creates a data-subject (patient) key hgw-p-* by its first encrypt:
# that is an "upsert", allowed only when disable_upsert=false AND the caller holds "create" on
# transit/encrypt/<key>. The gateway policy grants "create" on hgw-p-* only, so tenant keys
# (hgw-t-*) still cannot be upserted: a deleted (shredded) tenant key is never re-created by a
# wrap. An upserted key is aes256-gcm96, derived (a context is sent), not exportable, no
# plaintext backup; the policy forbids the parameters that would change that.
"$BAO" write "$MOUNT/config/keys" disable_upsert=false >/dev/null
log "transit/config/keys disable_upsert=false (patient keys are created by upsert)"

# 3. Policies (rewritten every run: the files in this directory are the source of truth).
declare -A POLICY_FILES=(
  [blindstore-gateway]=gateway-policy.hcl
  [blindstore-rewrap]=rewrap-policy.hcl
  [blindstore-kms-admin]=kms-admin-policy.hcl
  [blindstore-auditor]=auditor-policy.hcl
)
for policy in blindstore-gateway blindstore-rewrap blindstore-kms-admin blindstore-auditor; do
  render_policy "${POLICY_FILES[$policy]}" | "$BAO" policy write "$policy" - >/dev/null
  log "policy $policy written"
done

# 4. AppRole, enabled only if missing.
if "$BAO" read sys/auth/approle >/dev/null 2>&1; then
  log "approle auth already enabled"
else
  "$BAO" auth enable approle >/dev/null
  log "approle auth enabled"
fi

# 5. Roles. Tokens carry their one policy and not "default" (which would add cubbyhole, sys/
# capabilities-self, etc.). Service tokens, renewable up to token_max_ttl, then log in again.
bind_args=()
if [[ -n "$BIND_CIDR" ]]; then
  bind_args=("secret_id_bound_cidrs=$BIND_CIDR" "token_bound_cidrs=$BIND_CIDR")
fi
"$BAO" write auth/approle/role/blindstore-gateway \
  token_policies=blindstore-gateway token_no_default_policy=true token_type=service \
  token_ttl="$GATEWAY_TOKEN_TTL" token_max_ttl=24h secret_id_ttl="$SECRET_ID_TTL" \
  "${bind_args[@]}" >/dev/null
"$BAO" write auth/approle/role/blindstore-rewrap \
  token_policies=blindstore-rewrap token_no_default_policy=true token_type=service \
  token_ttl=1h token_max_ttl=8h secret_id_ttl="$SECRET_ID_TTL" >/dev/null
# Short-lived: an administrator logs in for one task.
"$BAO" write auth/approle/role/blindstore-kms-admin \
  token_policies=blindstore-kms-admin token_no_default_policy=true token_type=service \
  token_ttl=15m token_max_ttl=1h secret_id_ttl="$SECRET_ID_TTL" >/dev/null
"$BAO" write auth/approle/role/blindstore-auditor \
  token_policies=blindstore-auditor token_no_default_policy=true token_type=service \
  token_ttl=15m token_max_ttl=1h secret_id_ttl="$SECRET_ID_TTL" >/dev/null
log "approle roles blindstore-gateway, -rewrap, -kms-admin, -auditor configured"

# 6. The ed25519 signing key (crypto-shredding certificates, audit checkpoints). Writing an
# existing key returns it unchanged; then check it really is an ed25519 key.
"$BAO" write "$MOUNT/keys/$SIGN_KEY" type=ed25519 exportable=false \
  allow_plaintext_backup=false >/dev/null
sign_type="$("$BAO" read -field=type "$MOUNT/keys/$SIGN_KEY")"
if [[ "$sign_type" != "ed25519" ]]; then
  echo "provision.sh: $MOUNT/keys/$SIGN_KEY exists with type $sign_type, not ed25519" >&2
  exit 1
fi
log "signing key $SIGN_KEY (ed25519) present"

# 6b. The audit checkpoint key (ed25519): the gateway signs the audit chain's checkpoints with
# it (its policy allows transit/sign/<prefix>audit and no other signing). Never deletable
# (deletion_allowed stays false): old checkpoints must stay verifiable.
"$BAO" write "$MOUNT/keys/$AUDIT_KEY" type=ed25519 exportable=false \
  allow_plaintext_backup=false >/dev/null
audit_type="$("$BAO" read -field=type "$MOUNT/keys/$AUDIT_KEY")"
if [[ "$audit_type" != "ed25519" ]]; then
  echo "provision.sh: $MOUNT/keys/$AUDIT_KEY exists with type $audit_type, not ed25519" >&2
  exit 1
fi
log "audit checkpoint key $AUDIT_KEY (ed25519) present"

# 6c. The credentials key: S3 secret keys are stored sealed under it (docs/operations.md). The
# settings every blindstore wrapping key has; the gateway may encrypt and decrypt under it but
# not create it.
"$BAO" write "$MOUNT/keys/$CREDS_KEY" type=aes256-gcm96 derived=true exportable=false \
  allow_plaintext_backup=false >/dev/null
creds_derived="$("$BAO" read -field=derived "$MOUNT/keys/$CREDS_KEY")"
if [[ "$creds_derived" != "true" ]]; then
  echo "provision.sh: $MOUNT/keys/$CREDS_KEY exists and is not a derived key" >&2
  exit 1
fi
log "credentials key $CREDS_KEY (aes256-gcm96, derived) present"

# 6d. The data-subject digest key (HMAC): the catalog stores HMAC(key, SHA-256(subject id)) so
# that patient ids cannot be brute-forced from a catalog copy (the gateway's policy allows
# transit/hmac/<prefix>subjects only). Never rotate it in a way that drops version 1, never
# delete it: every stored digest is keyed by its version 1.
"$BAO" write "$MOUNT/keys/$SUBJECTS_KEY" type=hmac key_size=32 exportable=false \
  allow_plaintext_backup=false >/dev/null
subjects_type="$("$BAO" read -field=type "$MOUNT/keys/$SUBJECTS_KEY")"
if [[ "$subjects_type" != "hmac" ]]; then
  echo "provision.sh: $MOUNT/keys/$SUBJECTS_KEY exists with type $subjects_type, not hmac" >&2
  exit 1
fi
log "data-subject digest key $SUBJECTS_KEY (hmac) present"

# 7. Record the gateway's key-access justification in clear in the audit log (audit devices
# HMAC every request header they are told to record unless hmac=false). The header carries no
# secrets: tenant name, access key id, S3 operation, request id.
"$BAO" write "sys/config/auditing/request-headers/$JUSTIFICATION_HEADER" hmac=false >/dev/null
log "audit log records the $JUSTIFICATION_HEADER request header in clear"

if ! "$BAO" audit list -format=json 2>/dev/null | grep -q '"type"'; then
  log "WARNING: no audit device is enabled; declare one in the server config (README.md)"
fi

# 8. Credentials: role_id (not secret) and a fresh secret_id per role.
if [[ -n "$OUT" ]]; then
  mkdir -p "$OUT"
  chmod 0700 "$OUT"
fi
umask 077
emit() {  # emit NAME VALUE
  if [[ -n "$OUT" ]]; then
    printf '%s\n' "$2" >"$OUT/$1"
  else
    printf '%s=%s\n' "$1" "$2"
  fi
}
for role in blindstore-gateway blindstore-rewrap blindstore-kms-admin blindstore-auditor; do
  emit "$role.role_id" "$("$BAO" read -field=role_id "auth/approle/role/$role/role-id")"
  if [[ "$ISSUE_SECRET_IDS" == 1 ]]; then
    if [[ -n "$WRAP_TTL" ]]; then
      emit "$role.secret_id.wrapped" "$("$BAO" write -f -wrap-ttl="$WRAP_TTL" \
        -field=wrapping_token "auth/approle/role/$role/secret-id")"
    else
      emit "$role.secret_id" "$("$BAO" write -f -field=secret_id \
        "auth/approle/role/$role/secret-id")"
    fi
  fi
done
if [[ -n "$OUT" ]]; then
  log "role ids and secret ids written to $OUT"
fi
