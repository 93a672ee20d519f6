"""Backup and restore of the hub's legal record (sao lưu và khôi phục): every hub topic, the
catalogue, the keys file's reference, dashboard accounts and the operator audit log.

``manifest`` is the pure part (what a backup holds, whether it is intact, whether a target may
receive it); ``archive`` reads and writes Kafka; ``backup_cli``/``restore_cli`` are the
``lienthong backup`` and ``lienthong restore`` commands."""
