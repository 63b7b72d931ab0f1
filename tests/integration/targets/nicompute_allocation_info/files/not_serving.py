"""Copy a metagraph snapshot with one miner's axon switched off: upstream.py SRC DEST HOTKEY"""
import json
import sys

source, dest, hotkey = sys.argv[1:4]
with open(source) as handle:
    document = json.load(handle)
for neuron in document["neurons"]:
    if neuron["hotkey"] == hotkey:
        neuron["axon"] = {"ip": "0.0.0.0", "port": 0}
with open(dest, "w") as handle:
    json.dump(document, handle)
