"""moto server, with SQS's SendMessage no longer counting the whole queue.

moto 5.2.5's SendMessage reads the queue's ContentBasedDeduplication through `Queue.attributes`,
which walks every message of the queue three times to fill in the approximate counts: a send
costs time in proportion to the queue's depth (docs/design.md, "Local stack"). A standard queue
has no such attribute, so while a send to one runs, its attributes read as none. FIFO queues,
and every other reader of the attributes, keep moto's own path. Arguments are moto_server's.
"""

import threading

from moto import server
from moto.sqs.models import Queue, SQSBackend

_sending = threading.local()
_attributes = Queue.attributes
_send_message = SQSBackend.send_message


def _attributes_unless_sending(queue):
    if getattr(_sending, "active", False) and not queue.fifo_queue:
        return {}
    return _attributes.fget(queue)


def _send_without_counting(self, *args, **kwargs):
    _sending.active = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.active = False


Queue.attributes = property(_attributes_unless_sending)
SQSBackend.send_message = _send_without_counting

if __name__ == "__main__":
    server.main()
