#!/bin/sh
# Registers the search attributes Journeys writes (journeys/models.py,
# SEARCH_ATTRIBUTE_TYPES: name:type) in TEMPORAL_NAMESPACE; run again, it changes nothing.
#
# Runs in the temporalio/admin-tools image (the compose one-shot `temporal-setup`
# and the Kubernetes Job `journeys-search-attributes`). The `temporal` CLI reads
# the connection from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and,
# for a secured cluster, TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
# TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME or TEMPORAL_API_KEY.
# SETUP_CREATE_NAMESPACE=true creates the namespace when it is missing (retention
# SETUP_NAMESPACE_RETENTION, 7d unless set).
set -eu

ATTRIBUTES="JourneyKey:Keyword JourneyVersion:Keyword JourneyParticipant:Keyword JourneyStep:Keyword JourneyStatus:Keyword JourneyFollowUp:Keyword JourneyMessageStep:Keyword JourneyStepsTaken:KeywordList"

namespace="${TEMPORAL_NAMESPACE:-default}"
address="${TEMPORAL_ADDRESS:-localhost:7233}"
tries="${SETUP_TRIES:-60}"

# Runs "$@" until it succeeds, every 5 seconds, $tries times at most.
retry() {
    attempt=1
    until "$@"; do
        if [ "$attempt" -ge "$tries" ]; then
            return 1
        fi
        attempt=$((attempt + 1))
        sleep 5
    done
}

echo "waiting for Temporal at $address"
if ! retry temporal operator cluster health >/dev/null 2>&1; then
    echo "Temporal at $address did not answer as healthy" >&2
    exit 1
fi

if ! temporal operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
    if [ "${SETUP_CREATE_NAMESPACE:-false}" != "true" ]; then
        echo "namespace $namespace does not exist (create it, or set SETUP_CREATE_NAMESPACE=true)" >&2
        exit 1
    fi
    temporal operator namespace create --namespace "$namespace" \
        --retention "${SETUP_NAMESPACE_RETENTION:-7d}"
    echo "namespace $namespace: created"
fi

# The type under which $1 is registered in the namespace, empty when it is not.
type_of() {
    temporal operator search-attribute list --namespace "$namespace" |
        awk -v name="$1" '$1 == name { print $2 }'
}

create() {
    temporal operator search-attribute create --namespace "$namespace" --name "$1" --type "$2"
}

for pair in $ATTRIBUTES; do
    name="${pair%%:*}"
    kind="${pair#*:}"
    registered="$(type_of "$name")"
    if [ "$registered" = "$kind" ]; then
        echo "$name: already registered"
        continue
    fi
    if [ -n "$registered" ]; then
        echo "$name is registered as $registered in $namespace; Journeys needs $kind" >&2
        exit 1
    fi
    # A namespace created a moment ago takes a few seconds to be known everywhere.
    if ! retry create "$name" "$kind" || [ "$(type_of "$name")" != "$kind" ]; then
        echo "$name: could not be registered in $namespace" >&2
        exit 1
    fi
    echo "$name: registered ($kind)"
done
