#!/bin/sh
set -eu
export HF_TOKEN="${HF_TOKEN:?set HF_TOKEN}"
exec vllm serve "$MODEL"
