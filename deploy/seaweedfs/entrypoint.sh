#!/bin/sh
# SeaweedFS all-in-one (master + volume + filer + S3 gateway) for docker-compose.yml.
#
# Writes the S3 identity file from S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY (the same variables
# the API and worker read) and starts `weed server -s3` with it. Extra arguments are passed on
# to `weed server`. Data lives under /data (a named volume in compose).
set -eu

: "${S3_ACCESS_KEY_ID:?S3_ACCESS_KEY_ID must be set}"
: "${S3_SECRET_ACCESS_KEY:?S3_SECRET_ACCESS_KEY must be set}"
config="${S3_CONFIG_FILE:-/tmp/xai-s3.json}"
data_dir="${SEAWEED_DATA_DIR:-/data}"

json_escape() {
  printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'
}

umask 077
cat >"$config" <<JSON
{
  "identities": [
    {
      "name": "xai-compress",
      "credentials": [
        {
          "accessKey": "$(json_escape "$S3_ACCESS_KEY_ID")",
          "secretKey": "$(json_escape "$S3_SECRET_ACCESS_KEY")"
        }
      ],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON

exec weed server \
  -dir="$data_dir" \
  -ip.bind=0.0.0.0 \
  -volume.max=0 \
  -master.volumeSizeLimitMB=1024 \
  -s3 \
  -s3.port=8333 \
  -s3.config="$config" \
  "$@"
