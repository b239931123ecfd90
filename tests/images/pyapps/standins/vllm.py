"""vLLM's OpenAI server (``vllm serve MODEL --served-model-name NAME ... --port 8000``), as a
stand-in: the arguments are the ones mmstack generates for the real image, the API key is
VLLM_API_KEY as the real server reads it. Logs the engine configuration line the real server
prints at start (tensor_parallel_size=..., pipeline_parallel_size=...), from the same flags."""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from openai_standin import OpenAIStandin  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--served-model-name", nargs="+")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--host", default="0.0.0.0")
parser.add_argument("--max-model-len", type=int, default=4096)
parser.add_argument("--tensor-parallel-size", type=int, default=1)
parser.add_argument("--pipeline-parallel-size", type=int, default=1)
args, _ = parser.parse_known_args()
names = args.served_model_name or [args.model]
print(f"INFO Initializing a V1 LLM engine with config: model='{args.model}', "
      f"max_seq_len={args.max_model_len}, tensor_parallel_size={args.tensor_parallel_size}, "
      f"pipeline_parallel_size={args.pipeline_parallel_size}, served_model_name={names[0]}", flush=True)
with OpenAIStandin(api_key=os.environ.get("VLLM_API_KEY"), served_models=names, host=args.host,
                   port=args.port, max_model_len=args.max_model_len):
    while True:
        time.sleep(3600)
