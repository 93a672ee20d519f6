"""Words and number formats of the dashboard: Vietnamese (the default) and English.

Vietnamese writes a decimal comma and a thousands dot ("1.234", "99,71%"), as provincial
reports do; English the other way round.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"


def pick_lang(value: str | None) -> str:
    return value if value in LANGS else DEFAULT_LANG


def format_number(x: float, lang: str, decimals: int = 0) -> str:
    text = f"{x:,.{decimals}f}"
    if lang == "vi":
        text = text.replace(",", "\0").replace(".", ",").replace("\0", ".")
    return text


def format_percent(ratio: float | None, lang: str, decimals: int = 2) -> str:
    """``0.9971`` -> "99,71%" (vi) or "99.71%" (en); "—" when there is nothing to rate."""
    if ratio is None:
        return "—"
    return format_number(ratio * 100, lang, decimals) + "%"


def format_duration(amount: timedelta, day_length: timedelta, lang: str) -> str:
    """Working time as working days, hours and minutes ("1 ngày 2 giờ 5 phút")."""
    minutes = int(amount.total_seconds() // 60)
    day_minutes = max(1, int(day_length.total_seconds() // 60))
    days, rest = divmod(minutes, day_minutes)
    hours, mins = divmod(rest, 60)
    units = (("ngày", "giờ", "phút") if lang == "vi" else ("d", "h", "min"))
    parts = []
    if days:
        parts.append(f"{days} {units[0]}")
    if hours:
        parts.append(f"{hours} {units[1]}")
    if mins or not parts:
        parts.append(f"{mins} {units[2]}")
    return " ".join(parts)


def format_instant(t: datetime | None, tz: tzinfo, lang: str) -> str:
    if t is None:
        return ""
    local = t.astimezone(tz)
    return local.strftime("%H:%M %d/%m/%Y") if lang == "vi" else local.strftime("%Y-%m-%d %H:%M")


_WORDS: dict[str, tuple[str, str]] = {
    # key: (vi, en)
    "app": ("Điều hành liên thông", "Inter-agency operations"),
    "board": ("Hồ sơ quá hạn, sắp đến hạn", "Overdue and due soon"),
    "board.short": ("Bảng theo dõi", "Board"),
    "scoreboard": ("Kết quả giải quyết theo cơ quan", "Agency scoreboard"),
    "scoreboard.short": ("Thống kê", "Scoreboard"),
    "alerts": ("Cảnh báo", "Alerts"),
    "deadletters": ("Thư lỗi", "Dead letters"),
    "slip": ("Phiếu kiểm soát quá trình giải quyết hồ sơ", "Dossier tracking slip"),
    "login": ("Đăng nhập", "Sign in"),
    "logout": ("Đăng xuất", "Sign out"),
    "username": ("Tên đăng nhập", "Username"),
    "password": ("Mật khẩu", "Password"),
    "login.failed": ("Sai tên đăng nhập hoặc mật khẩu.", "Wrong username or password."),
    "login.rate_limited": ("Đăng nhập sai quá nhiều lần; vui lòng thử lại sau {seconds} giây.",
                           "Too many sign-in attempts; try again in {seconds} seconds."),
    "overdue": ("Quá hạn", "Overdue"),
    "due_soon": ("Sắp đến hạn", "Due soon"),
    "early": ("Trước hạn", "Early"),
    "on_time": ("Đúng hạn", "On time"),
    "late": ("Quá hạn", "Late"),
    "open": ("Đang giải quyết", "In progress"),
    "dossier": ("Hồ sơ", "Dossier"),
    "step": ("Bước", "Step"),
    "scope": ("Phạm vi", "Scope"),
    "procedure": ("Thủ tục", "Procedure"),
    "agency": ("Cơ quan", "Agency"),
    "holder": ("Cơ quan đang xử lý", "Holding agency"),
    "level": ("Cấp", "Level"),
    "all": ("Tất cả", "All"),
    "due_at": ("Hạn xử lý", "Due"),
    "late_by": ("Trễ (giờ hành chính)", "Late by (working time)"),
    "remaining": ("Còn lại", "Time left"),
    "applicant": ("Người nộp", "Applicant"),
    "id_number": ("Số định danh", "ID number"),
    "filter": ("Lọc", "Filter"),
    "paused": ("Tạm dừng", "Paused"),
    "nothing": ("Không có hồ sơ nào.", "Nothing to show."),
    "received": ("Tiếp nhận", "Received"),
    "ended": ("Đã giải quyết", "Ended"),
    "rate": ("Trước hạn và đúng hạn", "Early and on time"),
    "overdue_now": ("Đang quá hạn", "Overdue now"),
    "withdrawn": ("Rút hồ sơ", "Withdrawn"),
    "stopped": ("Dừng xử lý", "Stopped"),
    "total": ("Tổng cộng", "Total"),
    "from": ("Từ ngày", "From"),
    "to": ("Đến ngày", "To"),
    "basis": ("Tính theo", "Count by"),
    "basis.dossier": ("Hồ sơ (cơ quan tiếp nhận)", "Dossier (receiving agency)"),
    "basis.step": ("Bước xử lý (cơ quan xử lý)", "Step (agency holding it)"),
    "show": ("Xem", "Show"),
    "daily_rate": ("Tỷ lệ trước hạn và đúng hạn theo ngày", "Daily early-and-on-time rate"),
    "ind.766": ("Chỉ số theo Quyết định 766/QĐ-TTg", "Decision 766/QĐ-TTg indicators"),
    "ind.rate": ("Tỷ lệ hồ sơ giải quyết trước hạn, đúng hạn",
                 "Dossiers resolved early or on time"),
    "ind.portal": ("Tỷ lệ hồ sơ đồng bộ trạng thái lên Cổng DVCQG",
                   "Dossiers with status in sync with the national portal"),
    "receiving": ("Cơ quan tiếp nhận", "Receiving agency"),
    "channel": ("Kênh nộp", "Channel"),
    "received_at": ("Thời gian tiếp nhận", "Received at"),
    "appointment": ("Ngày hẹn trả kết quả", "Appointment"),
    "ended_at": ("Thời gian kết thúc", "Ended at"),
    "state": ("Trạng thái", "State"),
    "outcome": ("Kết quả", "Outcome"),
    "giver": ("Bên giao", "Given by"),
    "receiver": ("Bên nhận", "Received by"),
    "handed_at": ("Thời gian giao, nhận", "Handed over at"),
    "step_due": ("Hạn của bước", "Step due"),
    "step_ended": ("Hoàn thành bước", "Step ended"),
    "overrun": ("Trễ", "Overrun"),
    "handoffs": ("Quá trình giao, nhận hồ sơ", "Hand-offs"),
    "receipts": ("Biên nhận điện tử đã ký", "Signed receipts"),
    "receipt.kind": ("Nội dung", "Delivery"),
    "receipt.received_at": ("Bên nhận xác nhận lúc", "Receiver applied it at"),
    "receipt.key": ("Khóa ký", "Signing key"),
    "receipt.signature": ("Chữ ký số (Ed25519)", "Signature (Ed25519)"),
    "receipt.none": ("Chưa có biên nhận đã ký nào.", "No signed receipt yet."),
    "cause.receipt_missing": ("Thiếu biên nhận đã ký", "Signed receipt missing"),
    "pauses": ("Tạm dừng tính thời gian", "Clock pauses"),
    "pause.supplement": ("Yêu cầu bổ sung hồ sơ", "Supplement request"),
    "pause.obligation": ("Thực hiện nghĩa vụ tài chính", "Financial obligation"),
    "requested_by": ("Cơ quan yêu cầu", "Requested by"),
    "reason": ("Lý do", "Reason"),
    "apologies": ("Văn bản xin lỗi và hẹn lại ngày trả", "Apologies and new dates"),
    "new_due": ("Ngày hẹn mới", "New date"),
    "postal": ("Dịch vụ bưu chính công ích", "Public postal service"),
    "tracking": ("Số hiệu bưu gửi", "Tracking number"),
    "portal": ("Đồng bộ Cổng Dịch vụ công quốc gia", "National portal sync"),
    "portal.in_step": ("Khớp với trạng thái hệ thống", "Matches the hub's state"),
    "portal.drift": ("Lệch trạng thái", "Out of step"),
    "portal.none": ("Chưa đồng bộ", "Not synced yet"),
    "timeline": ("Nhật ký sự kiện", "Event timeline"),
    "note": ("Ghi chú", "Note"),
    "note.voided": ("Đã hủy", "Voided"),
    "note.correction": ("Đính chính", "Correction"),
    "note.voids": ("Hủy sự kiện", "Voids event"),
    "note.after_end": ("Sau khi kết thúc", "After the end"),
    "note.unexpected_recipient": ("Chuyển ngoài quy trình", "Off the route"),
    "void": ("Hủy…", "Void…"),
    "void.reason": ("Lý do hủy", "Reason for voiding"),
    "void.submit": ("Hủy sự kiện này", "Void this event"),
    "void.sent": ("Đã gửi yêu cầu hủy sự kiện; hồ sơ đang được tính lại",
                  "Void sent; the dossier is being recomputed"),
    "void.forbidden": ("Tài khoản này không được hủy sự kiện", "This account may not void events"),
    "void.reason_required": ("Cần ghi lý do hủy", "A reason is required"),
    "void.failed": ("Hủy sự kiện không thành công", "The void failed"),
    "correct": ("Đính chính…", "Correct…"),
    "correct.to_agency": ("Cơ quan nhận đúng", "The right recipient"),
    "correct.reason": ("Lý do đính chính", "Reason for the correction"),
    "correct.submit": ("Chuyển lại cho cơ quan này", "Hand off to this agency instead"),
    "correct.sent": ("Đã gửi đính chính; hồ sơ đang được tính lại",
                     "Correction sent; the dossier is being recomputed"),
    "correct.failed": ("Đính chính không thành công", "The correction failed"),
    "event": ("Sự kiện", "Event"),
    "detail": ("Chi tiết", "Detail"),
    "at": ("Thời điểm", "At"),
    "desk": ("Người nộp hồ sơ (Bộ phận Một cửa)", "Applicant (one-stop desk)"),
    "print": ("In phiếu", "Print"),
    "not_found": ("Không tìm thấy hồ sơ.", "Dossier not found."),
    "kind": ("Loại", "Kind"),
    "fired_at": ("Thời điểm cảnh báo", "Fired at"),
    "destination": ("Hệ thống nhận", "Destination"),
    "source": ("Nguồn", "Source"),
    "resend": ("Gửi lại", "Re-send"),
    "resent": ("Đã gửi lại bản tin", "Message re-sent"),
    "resend.failed": ("Gửi lại không thành công", "Re-send failed"),
    "size": ("Kích thước", "Size"),
    "search": ("Tra cứu mã hồ sơ hoặc số định danh", "Dossier code or ID number"),
    "search.button": ("Tra cứu", "Search"),
    "search.id_forbidden": ("Tài khoản của bạn không được tra cứu theo số định danh.",
                            "Your account may not search by ID number."),
    "live": ("Trực tuyến", "Live"),
    "offline": ("Mất kết nối", "Offline"),
    "updated": ("Cập nhật", "Updated"),
    "clock.simulated": ("Giờ mô phỏng", "Simulated time"),
    "clock.since": ("từ", "from"),
    "clock.simulated.title": ("Bản trình diễn: thời gian chạy nhanh gấp {speed} lần thời gian "
                              "thực, bắt đầu lúc {origin}; không phải giờ thực.",
                              "Demo: time runs {speed} times real time from {origin}; "
                              "not the real time."),
    "signed_in_as": ("Đăng nhập:", "Signed in:"),
    "province_wide": ("toàn tỉnh", "whole province"),
    "forbidden": ("Bạn không có quyền xem nội dung này.", "You may not see this."),
    "count": ("Số lượng", "Count"),
    "state.processing": ("Đang xử lý", "Processing"),
    "state.paused": ("Tạm dừng", "Paused"),
    "state.ended": ("Đã có kết quả", "Result ready"),
    "state.withdrawn": ("Rút hồ sơ", "Withdrawn"),
    "state.stopped": ("Dừng xử lý", "Stopped"),
    "channel.desk": ("Trực tiếp", "At the desk"),
    "channel.online": ("Trực tuyến", "Online"),
    "channel.postal": ("Bưu chính công ích", "By post"),
    "level.province": ("Cấp tỉnh", "Province"),
    "level.centre": ("Trung tâm PVHCC", "Service centre"),
    "level.department": ("Sở, ngành", "Department"),
    "level.district": ("Cấp huyện", "District"),
    "level.commune": ("Cấp xã", "Commune"),
    "level.vertical": ("Ngành dọc", "Vertical agency"),
    "level.system": ("Hệ thống ngoài", "Outside system"),
    "level.unknown": ("Chưa rõ", "Unknown"),
    "report.no": ("STT", "No."),
    "report.agency_code": ("Mã cơ quan", "Agency code"),
    "report.rate": ("Tỷ lệ trước hạn và đúng hạn (%)", "Early and on time (%)"),
    "report.judged": ("Số hồ sơ đánh giá", "Dossiers judged"),
    "report.early_on_time": ("Trước hạn và đúng hạn", "Early or on time"),
    "report.portal_synced": ("Đồng bộ đúng trạng thái DVCQG", "In step with the portal"),
    "report.sheet.scoreboard": ("Kết quả giải quyết", "Scoreboard"),
    "report.sheet.indicators": ("Chỉ số QĐ 766", "Decision 766"),
    "report.download": ("Tải về", "Download"),
    "alert.due_soon": ("Sắp đến hạn", "Due soon"),
    "alert.overdue": ("Quá hạn", "Overdue"),
    "alert.unexpected_recipient": ("Chuyển sai cơ quan", "Unexpected recipient"),
    "alert.repeat_supplement": ("Yêu cầu bổ sung lần hai", "Repeated supplement request"),
    "alert.appointment_mismatch": ("Lệch ngày hẹn", "Appointment mismatch"),
    "alert.delivery_failing": ("Gửi liên thông lỗi", "Delivery failing"),
    "alert.portal_drift": ("Lệch trạng thái Cổng DVCQG", "Portal drift"),
    # citizen notifications (lienthong citizen-notify)
    "citizen": ("Thông báo cho người dân", "Citizen notifications"),
    "citizen.channel": ("Kênh", "Channel"),
    "citizen.to": ("Người nhận", "To"),
    "citizen.status": ("Tình trạng", "Status"),
    "citizen.kind.received": ("Đã tiếp nhận hồ sơ", "Dossier received"),
    "citizen.kind.handoff": ("Chuyển xử lý", "Handed on"),
    "citizen.kind.supplement": ("Yêu cầu bổ sung", "Supplement needed"),
    "citizen.kind.apology": ("Xin lỗi, hẹn lại ngày trả", "Apology and new date"),
    "citizen.kind.result_ready": ("Có kết quả", "Result ready"),
    "citizen.kind.result_posted": ("Đã gửi kết quả qua bưu chính", "Result posted"),
    "citizen.channel.sms": ("Tin nhắn SMS", "SMS"),
    "citizen.channel.zalo": ("Zalo OA", "Zalo OA"),
    "citizen.channel.email": ("Thư điện tử", "E-mail"),
    "citizen.channel.none": ("—", "—"),
    "citizen.status.queued": ("Chờ gửi", "Queued"),
    "citizen.status.held": ("Chờ đến sáng (giờ yên lặng)", "Held for the morning (quiet hours)"),
    "citizen.status.sent": ("Đã chuyển nhà mạng", "Handed to the provider"),
    "citizen.status.delivered": ("Đã đến người nhận", "Delivered"),
    "citizen.status.failed": ("Không gửi được", "Failed"),
    "citizen.status.skipped": ("Không gửi", "Not sent"),
    "citizen.detail.opted_out": ("người dân đã từ chối nhận", "the citizen opted out"),
    "citizen.detail.no_contact": ("không có số điện thoại, Zalo hay thư điện tử",
                                  "no phone, Zalo or e-mail given"),
    "citizen.detail.stale": ("sự kiện quá cũ", "event too old"),
    "citizen.until": ("gửi lúc", "to go at"),
    "citizen.detail.voided": ("sự kiện đã bị hủy", "the event was voided"),
}

EVENT_TYPES: dict[str, tuple[str, str]] = {
    "received": ("Tiếp nhận hồ sơ", "Received"), "handoff": ("Chuyển hồ sơ", "Hand-off"),
    "supplement_requested": ("Yêu cầu bổ sung", "Supplement requested"),
    "supplement_received": ("Nhận hồ sơ bổ sung", "Supplement received"),
    "obligation_requested": ("Thông báo nghĩa vụ tài chính", "Obligation requested"),
    "obligation_paid": ("Hoàn thành nghĩa vụ tài chính", "Obligation paid"),
    "apology_issued": ("Xin lỗi và hẹn lại", "Apology issued"),
    "result_ready": ("Có kết quả", "Result ready"), "returned": ("Trả kết quả", "Returned"),
    "withdrawn": ("Rút hồ sơ", "Withdrawn"), "stopped": ("Dừng xử lý", "Stopped"),
    "postal_update": ("Cập nhật bưu chính", "Postal update"),
    "event_voided": ("Hủy sự kiện", "Event voided"),
}

PORTAL_STATUS: dict[int, tuple[str, str]] = {
    1: ("Mới", "New"), 2: ("Đã tiếp nhận", "Received"), 3: ("Không tiếp nhận", "Not received"),
    4: ("Đang xử lý", "Processing"), 5: ("Yêu cầu bổ sung", "Supplement requested"),
    6: ("Nghĩa vụ tài chính", "Financial obligation"), 7: ("Công dân rút hồ sơ", "Withdrawn"),
    8: ("Dừng xử lý", "Stopped"), 9: ("Đã xử lý xong", "Processed"),
    10: ("Đã trả kết quả", "Result returned"),
}


def t(key: str, lang: str) -> str:
    """The word for ``key`` in ``lang``; an unknown key shows as itself (visible, not fatal)."""
    pair = _WORDS.get(key)
    if pair is None:
        return key
    return pair[0] if lang == "vi" else pair[1]


def event_label(kind: str, lang: str) -> str:
    pair = EVENT_TYPES.get(kind)
    return kind if pair is None else (pair[0] if lang == "vi" else pair[1])


def portal_label(code: int | None, lang: str) -> str:
    if code is None:
        return t("portal.none", lang)
    pair = PORTAL_STATUS.get(code)
    label = (pair[0] if lang == "vi" else pair[1]) if pair else "?"
    return f"{code} – {label}"
