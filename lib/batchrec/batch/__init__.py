"""Batch jobs: one runner shared by ``recommend``, ``rank``, ``related`` and ``segment``.

A batch job opens a solution version, reads its requests (``batchrec.batch.inputs``), decides what
is eligible, scores through ``batchrec.scoring`` and writes through ``batchrec.sinks``.
"""
