"""The tamper-evident audit log (nhật ký kiểm tra có chuỗi băm): ``chain`` is the pure hash
chain and its checks, ``entries`` builds entries with the one codec, ``service`` is the single
writer of ``audit.log`` (``lienthong audit chain``), ``verify`` and ``export`` read it back."""
