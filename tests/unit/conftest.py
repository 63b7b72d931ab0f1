# Makes the collection importable as ansible_collections.neuralinternet.compute when pytest is
# run by hand; hack/setup.sh links .build/ansible_collections/neuralinternet/compute to the checkout.
import os
import sys

BUILD = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".build"))

if os.path.isdir(os.path.join(BUILD, "ansible_collections")) and BUILD not in sys.path:
    sys.path.insert(0, BUILD)
