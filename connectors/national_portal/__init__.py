"""The national portal connector (Cổng Dịch vụ công quốc gia, DVCQG): status syncs in the
portal's codes and a reconciler that raises ``portal_drift`` when the portal disagrees."""
