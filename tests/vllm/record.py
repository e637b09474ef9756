"""Record a real vLLM server's answers for the client's unit tests (tests/test_remote.py replays them).

    python -m tests.vllm.record --url http://localhost:8011 --out tests/data/vllm-mini-gpt2.jsonl

The server must serve the bundled model under its short name (`--model assets/mini-gpt2 --served-model-name
mini-gpt2`, as tests/vllm/run starts it), so that the replaying tests load the same tokenizer. Each call below is
one that tests/test_remote.py makes again, with the same arguments, against the recording.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gpt2_core.remote import BackendRequestError, CompletionsClient, RemoteModel
from gpt2_core.testing.recorded import RecordingTransport

# The calls the unit tests replay (keep in step with tests/test_remote.py).
PROMPT = "ROMEO.\nWhat say you"
SCORED = "To be, or not to be, that is the question."


def record(url: str, out: Path) -> None:
    transport = RecordingTransport()
    lm = RemoteModel(url, client=CompletionsClient(url, transport=transport))
    lm.generate(PROMPT, max_new_tokens=24, temperature=0, seed=1, alternatives=5)
    lm.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=11, num_samples=2, alternatives=3)
    lm.generate(PROMPT, max_new_tokens=16, temperature=0.9, top_k=0, seed=12)
    lm.generate(PROMPT, max_new_tokens=40, temperature=0, seed=1, stop=["\n\n"])
    lm.next_token_distribution(PROMPT, temperature=0.8, top_k=10, k=12)
    lm.score_text(SCORED, top=8)
    lm.sequence_logprob("To be, or not to be")
    try:  # a request the server refuses: its real error body
        lm.backend._client.complete(model=lm.name, prompt=[0] * 200, max_tokens=1)
    except BackendRequestError as e:
        print("refused as expected:", e)
    transport.save(out)
    print(f"recorded {len(transport.exchanges)} exchanges in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, default=Path("tests/data/vllm-mini-gpt2.jsonl"))
    args = parser.parse_args()
    record(args.url, args.out)
