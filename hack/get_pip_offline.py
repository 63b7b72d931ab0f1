# neuralinternet.compute stand-in for ansible-test's get-pip bootstrap script.
#
# ansible-test sanity creates a virtual environment per test and bootstraps pip in it with a
# get-pip.py it downloads from ci-files.testing.ansible.com, even with --local. That host is
# not reachable from CI; PyPI is. ansible-test uses ~/.ansible/test/cache/get_pip_<ver>.py
# when it exists, so hack/setup.sh installs this file there. It is run as
#   python <quiet_pip.py> --disable-pip-version-check pip==<ver> [--no-setuptools] [--no-wheel]
# inside the new virtual environment.
import os
import subprocess
import sys

# get-pip.py options that `pip install` does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main():
    env = dict(os.environ)
    # Let pip read /etc/pip.conf (index, certificates) rather than a per-user override.
    env.pop("PIP_CONFIG_FILE", None)
    env.pop("GET_PIP", None)
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], env=env,
                          stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"] + args, env=env)


if __name__ == "__main__":
    main()
