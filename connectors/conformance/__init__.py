"""The vendor conformance kit (bộ kiểm tra tích hợp): ``lienthong conformance``."""
