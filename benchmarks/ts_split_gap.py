"""How much of nanoGPT's Tiny Shakespeare score comes from training on our valid split.

nanoGPT trains on the first 90% of the file and reports its loss on the last 10%, which is exactly our test split;
tinylm trains on the first 80% and selects on the next 10% (valid). The same Kneser-Ney model (orders 5 and 7)
counted on 80% and on 90% of the text, scored on the test split, measures what those extra 10% (the text just before
the test split) are worth to a model that sees them.

    python benchmarks/ts_split_gap.py [DATA_DIR]

DATA_DIR is where datasets are stored (default ./data or $TINYLM_DATA_DIR; TINYLM_DATA_MIRROR names a local folder
with the dataset files, as for `tinylm`).

Prints one JSON row per order (writes no file; benchmarks/logs/ts-split-gap.json is a copy). Takes about 10 seconds
on a 2-core CPU.
"""

import json
import sys

import numpy as np

from tinylm.data.config import DataConfig
from tinylm.data.corpus import load_corpus
from tinylm.ngram import KneserNey

corpus = load_corpus(DataConfig(name="tinyshakespeare"), sys.argv[1] if len(sys.argv) > 1 else None, quiet=True)
train, valid, test = (np.asarray(corpus.splits[s]) for s in ("train", "valid", "test"))
V = corpus.tokenizer.vocab_size
rows = []
for order in (5, 7):
    ours = KneserNey(train, V, order)
    nanogpt = KneserNey(np.concatenate([train, valid]), V, order)
    rows.append({"order": order, "valid_loglik_trained_on_80": float(ours.logprobs(valid).mean()),
                 "test_loglik_trained_on_80": float(ours.logprobs(test).mean()),
                 "test_loglik_trained_on_90": float(nanogpt.logprobs(test).mean())})
    rows[-1]["worth_of_the_valid_split_on_test"] = rows[-1]["test_loglik_trained_on_90"] - rows[-1][
        "test_loglik_trained_on_80"]
print(json.dumps(rows, indent=1))
