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

moto keeps a transaction's rollback by deep-copying every table it names, once
per part, before applying it: with thousands of items each claim then costs a
copy of the whole table, and a run of thousands of claims takes hours. Here a
transaction keeps a copy of the items it names instead and puts them back when
it is cancelled; requests being one at a time, nothing else sees the items
in between.

moto's SQS send reads the queue's attributes to learn one of them
(`ContentBasedDeduplication`), and working out all of them counts every
message the queue holds: each send costs a pass over the queue, and filling
it with thousands of messages takes quadratic time. While a send runs here,
the attributes it reads are that one alone; every other reader (and
`GetQueueAttributes`) still gets them all, counted.

Same arguments as `python3 -m moto.server`.
"""

import copy
import threading
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import SQSBackend, Queue

_one_at_a_time = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialized_call_action(self):
    with _one_at_a_time:
        return _call_action(self)


DynamoHandler.call_action = _serialized_call_action


def _copy_all_but_tables(value):
    return value if isinstance(value, Table) else copy.deepcopy(value)


# What moto's DynamoDB module sees as `copy` while a transaction applies:
# tables are "copied" as themselves, everything else as before.
_tables_kept = types.SimpleNamespace(deepcopy=_copy_all_but_tables)
_transact_write_items = DynamoDBBackend.transact_write_items


def _item_key(table, op):
    key = op.get("Key") or op.get("Item") or {}
    if table.hash_key_attr not in key:
        return None
    range_key = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in key:
            return None
        range_key = DynamoType(key[table.range_key_attr])
    return DynamoType(key[table.hash_key_attr]), range_key


def _put_back(table, hash_key, range_key, item):
    if item is None:
        table.delete_item(hash_key, range_key)
    elif range_key is not None:
        table.items[hash_key][range_key] = item
    else:
        table.items[hash_key] = item


def _transact_write_items_keeping_items(self, transact_items):
    kept = []
    for part in transact_items:
        op = next(iter(part.values()), None)
        table = self.tables.get((op or {}).get("TableName"))
        key = table is not None and _item_key(table, op)
        if key:
            kept.append((table, *key, copy.deepcopy(table.get_item(*key))))
    dynamodb_models.copy = _tables_kept
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(kept):
            _put_back(table, hash_key, range_key, item)
        raise
    finally:
        dynamodb_models.copy = copy


DynamoDBBackend.transact_write_items = _transact_write_items_keeping_items

_sending = threading.local()
_queue_attributes = Queue.attributes


def _attributes_unless_sending(self):
    if getattr(_sending, "active", False):
        # All a send reads, and only FIFO queues have it.
        if self.fifo_queue:
            value = self.content_based_deduplication
            return {"ContentBasedDeduplication": str(value).lower()}
        return {}
    return _queue_attributes.fget(self)


Queue.attributes = property(_attributes_unless_sending)
_send_message = SQSBackend.send_message


def _send_message_without_counting(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


SQSBackend.send_message = _send_message_without_counting

if __name__ == "__main__":
    main()
