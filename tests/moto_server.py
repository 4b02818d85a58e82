"""`moto_server` with its DynamoDB requests applied one at a time.

DynamoDB applies every request atomically: a conditional write is checked
against the item as the previous write left it, and a transaction's parts
commit together or not at all. moto's server answers each request on a thread
of its own, and its DynamoDB backend takes no lock, so two conditional writes
racing on one item can both pass their check (a lost update no region would
allow) and concurrent transactions can fail with HTTP 500. The stores' tests
exist to catch lost updates, so the emulator must not make its own: DynamoDB
requests take one lock here. Other services (SQS long polls among them) keep
moto's threads.

Same arguments as `python3 -m moto.server`.
"""

import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_one_at_a_time = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialized_call_action(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _serialized_call_action

if __name__ == "__main__":
    main()
