"""The VNPost connector (bưu chính công ích): tracking webhooks in, ``postal_update`` events
(and ``received`` for dossiers carried to a desk) out to ``dossier.events``."""
