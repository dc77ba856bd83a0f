"""moto server, with costs that grow with use or with load taken out of its requests.

Measured with py-spy on moto 5.2.5 under the local stack's load (docs/design.md, "Local stack"):
- `Queue.attributes` walks every message of the queue three times to fill in the approximate
  counts, so whatever reads it costs time in proportion to the queue's depth:
  - SendMessage reads the queue's ContentBasedDeduplication through it. A standard queue has no
    such attribute, so while a send to one runs, its attributes read as none. FIFO queues, and
    every other reader of the attributes, keep moto's own path.
  - ReceiveMessage reads the queue's MessageRetentionPeriod through it, two or three times for
    each message it hands out. The check reads that one attribute from the queue instead.
- Every request finds its service by host, under one lock for all threads: each time, a listing
  of moto's package directory with a `stat` per entry, then hundreds of URL patterns tried in
  turn. The answer for a host never changes while the server runs, so it is kept.
- Every request writes an access line to the log. Errors are still logged.
Arguments are moto_server's.
"""

import functools
import threading

from moto import server
from moto.core.utils import unix_time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
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


def _retained(self, queue_name, message):
    retention_period = self.get_queue(queue_name).message_retention_period
    return retention_period + message.sent_timestamp / 1000 > unix_time()


def _no_access_line(self, code="-", size="-"):
    pass


Queue.attributes = property(_attributes_unless_sending)
SQSBackend.send_message = _send_without_counting
SQSBackend.is_message_valid_based_on_retention_period = _retained
DomainDispatcherApplication.get_backend_for_host = functools.lru_cache(maxsize=4096)(
    DomainDispatcherApplication.get_backend_for_host
)
MotoRequestHandler.log_request = _no_access_line

if __name__ == "__main__":
    server.main()
