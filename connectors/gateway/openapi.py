"""The OpenAPI 3.1 document the gateway serves at ``/openapi.json`` for agency software
vendors. Event fields follow DESIGN section 4; the codec remains the judge of validity."""

from __future__ import annotations

from typing import Any

_SIGNATURE_TEXT = (
    "Every /v1 request is signed. X-Signature = hex HMAC-SHA256(secret, METHOD + \"\\n\" + "
    "PATH + \"\\n\" + X-Timestamp + \"\\n\" + X-Nonce + \"\\n\" + hex SHA-256(body)). PATH is "
    "the request target as sent (path and ?query). X-Timestamp is Unix seconds within 5 "
    "minutes of the hub's clock; X-Nonce is 16-128 ASCII characters never reused."
)

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string", "description": "machine-readable reason",
                             "examples": ["bad_signature", "replayed_nonce",
                                          "stale_timestamp", "malformed_json"]},
                   "detail": {"type": "string"}},
}

_REJECTION = {
    "type": "object",
    "required": ["index", "event_id", "field", "problem", "reason"],
    "properties": {
        "index": {"type": "integer", "description": "position in the batch (0 for one event)"},
        "event_id": {"type": ["string", "null"]},
        "field": {"type": ["string", "null"], "description": "the offending field"},
        "problem": {"type": "string"},
        "reason": {"type": "string", "enum": ["forbidden_agency", "operator_only",
                                              "invalid_event", "too_long", "too_deep",
                                              "too_large", "not_an_object",
                                              "duplicate_in_batch"]},
    },
}

_EVENT = {
    "type": "object",
    "description": "A dossier event in canonical JSON (DESIGN section 4). Strings are "
                   "normalised to Unicode NFC. `agency` must be the signing agency. Voids "
                   "(`event_voided`) and corrections (`operator`, `corrects_event_id`) are the "
                   "hub operators' and are refused here (`operator_only`).",
    "required": ["event_id", "type", "dossier", "at", "agency"],
    "properties": {
        "event_id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "enum": [
            "received", "handoff", "supplement_requested", "supplement_received",
            "obligation_requested", "obligation_paid", "apology_issued", "result_ready",
            "returned", "withdrawn", "stopped", "postal_update"]},
        "dossier": {"type": "string", "examples": ["G09.20-20260609-0092637",
                                                   "000.00.15.H99-261125-0007"]},
        "at": {"type": "string", "format": "date-time"},
        "agency": {"type": "string", "maxLength": 13},
        "procedure": {"type": "string", "examples": ["1.001193"]},
        "channel": {"type": "string", "enum": ["desk", "online", "postal"]},
        "applicant": {"type": "object", "properties": {
            "name": {"type": "string"}, "id_number": {"type": "string"},
            "phone": {"type": "string", "description": "for notifications (contract v3)",
                      "examples": ["0912345678", "+84912345678"]},
            "email": {"type": "string", "format": "email"},
            "zalo_user_id": {"type": "string"}}},
        "appointment_at": {"type": "string", "format": "date-time"},
        "to_agency": {"type": "string"},
        "note": {"type": "string"},
        "reason": {"type": "string"},
        "amount_vnd": {"type": "integer", "minimum": 0},
        "new_due_at": {"type": "string", "format": "date-time"},
        "decision": {"type": "string", "enum": ["approved", "refused"]},
        "tracking_number": {"type": "string"},
        "leg": {"type": "string", "enum": ["dossier_in", "result_out"]},
        "status": {"type": "string", "enum": ["picked_up", "in_transit", "delivered",
                                              "failed", "returned_to_sender"]},
        "correlation_id": {"type": "string", "maxLength": 200},
    },
    "examples": [{
        "event_id": "5b1e7c3a-8f7e-4a51-9d1c-0c6f2b1d9a01", "type": "received",
        "dossier": "000.00.15.H99-261125-0007", "at": "2026-11-25T09:15:00+07:00",
        "agency": "000.00.15.H99", "procedure": "1.001193", "channel": "desk",
        "applicant": {"name": "Nguyễn Văn A", "id_number": "001099012345"}}],
}


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_AUTH_ERRORS = {
    "401": _json(_ref("Error"), "Signature refused: missing_header, bad_timestamp, "
                 "stale_timestamp, future_timestamp, bad_nonce, unknown_agency, "
                 "revoked_key, bad_signature, replayed_nonce (also when the request was "
                 "first accepted by another gateway of the hub)"),
    "429": _json(_ref("Error"), "rate_limited: this agency sent more requests per second "
                 "than this gateway allows; retry after Retry-After seconds (also in "
                 "retry_after)"),
    "503": _json(_ref("Error"), "Temporarily unable to accept (spool full, too many live "
                 "nonces, nonce store unavailable); retry after Retry-After seconds"),
}


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "lienthong gateway", "version": "1",
                 "description": "The hub's front door for agency one-stop systems. "
                                + _SIGNATURE_TEXT},
        "paths": {
            "/v1/events": {"post": {
                "summary": "Publish one event or a batch (JSON array)",
                "security": [{"agencySignature": []}],
                "parameters": _header_params(),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"oneOf": [_ref("Event"),
                                         {"type": "array", "items": _ref("Event"),
                                          "minItems": 1, "maxItems": 500}]}}}},
                "responses": {
                    "202": _json(_ref("Outcome"), "Accepted events are in Kafka or in the "
                                 "gateway's durable spool; refused ones are listed"),
                    "400": _json({"oneOf": [_ref("Error"), _ref("Outcome")]},
                                 "Malformed body or every event refused"),
                    "403": _json(_ref("Outcome"), "Every event names another agency"),
                    "413": _json({"oneOf": [_ref("Error"), _ref("Outcome")]},
                                 "Body, batch or strings over the limits"),
                    "422": _json(_ref("Outcome"), "Every event refused by the contract"),
                    **_AUTH_ERRORS,
                }}},
            "/v1/dossiers/{code}": {"get": {
                "summary": "A dossier's timeline (only for agencies involved in it)",
                "security": [{"agencySignature": []}],
                "parameters": [{"name": "code", "in": "path", "required": True,
                                "schema": {"type": "string"}}, *_header_params()],
                "responses": {
                    "200": _json({"type": "object", "properties": {
                        "dossier": {"type": "string"},
                        "agencies": {"type": "array", "items": {"type": "string"}},
                        "events": {"type": "array", "items": _ref("Event")}}}, "Timeline"),
                    "400": _json(_ref("Error"), "Not a dossier code"),
                    "403": _json(_ref("Error"), "The agency is not involved in this dossier"),
                    "404": _json(_ref("Error"), "Unknown dossier"),
                    "501": _json(_ref("Error"), "No timeline store is wired to this gateway"),
                    **_AUTH_ERRORS,
                }}},
            "/healthz": {"get": {"summary": "Liveness and Kafka path (direct or spooling)",
                                 "responses": {"200": _json({"type": "object"}, "Alive")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text exposition"}}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {
            "schemas": {
                "Event": _EVENT,
                "Error": _ERROR,
                "Rejection": _REJECTION,
                "Outcome": {"type": "object", "required": ["accepted", "rejected"],
                            "properties": {
                                "accepted": {"type": "array", "items": {"type": "string"}},
                                "rejected": {"type": "array", "items": _ref("Rejection")},
                                "error": {"type": "string"}}},
            },
            "securitySchemes": {"agencySignature": {
                "type": "apiKey", "in": "header", "name": "X-Signature",
                "description": _SIGNATURE_TEXT}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _header_params() -> list[dict[str, Any]]:
    return [
        {"name": "X-Agency", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Timestamp", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        {"name": "X-Nonce", "in": "header", "required": True,
         "schema": {"type": "string", "minLength": 16, "maxLength": 128}},
    ]
