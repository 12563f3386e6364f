#!/usr/bin/env bash
# kafka-acls.sh as librdkafka's suite calls it ($KAFKA_PATH/bin/kafka-acls.sh, e.g. 0109), run by
# `waterline acls`: Kafka's `--add` / `--remove` / `--list` become the subcommand; `--force` is
# dropped (waterline asks no questions); every other flag is spelled the same (`--deny-host` and
# `--allow-host` are aliases of `--host`; operations like `All` or `IdempotentWrite` are accepted).
# run.sh sets KAFKA_PATH to this directory's parent and WATERLINE_BIN to the broker's binary.
set -euo pipefail
sub=list
args=()
for a in "$@"; do
  case "$a" in
  --add) sub=add ;;
  --remove) sub=remove ;;
  --list) sub=list ;;
  --force) ;;
  *) args+=("$a") ;;
  esac
done
exec "${WATERLINE_BIN:?kafka-acls.sh: WATERLINE_BIN is not set}" acls "$sub" "${args[@]}"
