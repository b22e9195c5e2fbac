"""The local topology started by ``kubernaut up`` and by the test suite, from Debian's binaries."""

from kubernaut_tools.localstack.stack import LocalStack
from kubernaut_tools.localstack.topology import RunDir, Topology

__all__ = ["LocalStack", "RunDir", "Topology"]
