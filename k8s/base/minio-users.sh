#!/bin/bash
# MinIO's postStart hook (minio.yaml): with the root user, which only MinIO holds, create the
# buckets and one user per service with only the policy it needs; idempotent, so it runs at
# every start and a changed secret takes effect on the next one. MinIO's image is minimal
# (bash, coreutils, mc): nothing else is used.
#   rest, worker: read and write songs and output (they store, separate and delete songs).
#   render: read and write output; delete songs (the expiry sweep that every worker runs).
# The logs consumer gets no store user at all.
set -eu
export MC_CONFIG_DIR=/tmp/mc
here=${0%/*}
tries=0
until mc alias set local http://127.0.0.1:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" \
    >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "minio-users: MinIO did not answer in 60 s" >&2
    exit 1
  fi
  sleep 1
done
mc mb --ignore-existing "local/$SONGS_BUCKET" "local/$OUTPUT_BUCKET" >/dev/null

policy() {  # name, file: the file with the configured bucket names filled in
  local text
  text=$(<"$here/$2")
  text=${text//SONGS_BUCKET/$SONGS_BUCKET}
  printf '%s\n' "${text//OUTPUT_BUCKET/$OUTPUT_BUCKET}" > "$MC_CONFIG_DIR/$1.json"
  mc admin policy create local "$1" "$MC_CONFIG_DIR/$1.json" >/dev/null
}

user() {  # access key, secret key, policy
  mc admin user add local "$1" "$2" >/dev/null
  # attach refuses a policy already attached; the user's info then names it.
  mc admin policy attach local "$3" --user "$1" >/dev/null 2>&1 \
    || [[ "$(mc admin user info local "$1")" == *"$3"* ]]
}

policy micro-demucs-app minio-policy-app.json
policy micro-demucs-render minio-policy-render.json
user "$REST_ACCESS_KEY" "$REST_SECRET_KEY" micro-demucs-app
user "$WORKER_ACCESS_KEY" "$WORKER_SECRET_KEY" micro-demucs-app
user "$RENDER_ACCESS_KEY" "$RENDER_SECRET_KEY" micro-demucs-render
echo "minio-users: buckets and service users in place"
