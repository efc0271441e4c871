#!/usr/bin/python3
"""Parse an iCalendar feed with parsers no one here wrote and print what
they understand, as JSON: Debian's python3-icalendar reads it and
python3-recurring-ical-events expands every recurrence (RRULE, RDATE,
EXDATE, RECURRENCE-ID overrides) in [from, to).

  expand.py FILE FROM TO   (FROM, TO: ISO 8601 instants)

Prints {"problems": [...], "calendar": {...}, "occurrences": [...]}:
problems are breaches of RFC 5545 the parsers accept silently (a line not
ended by CRLF, a content line longer than 75 octets, a property a VEVENT
must have and lacks); each occurrence is {uid, start, end, summary,
status, sequence} with instants in UTC.  Exits 2 when the text does not
parse at all."""
import datetime
import json
import sys

import icalendar
import recurring_ical_events


def utc(value):
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise ValueError("not a UTC date-time: %r" % (value,))
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    path, start, stop = sys.argv[1:4]
    raw = open(path, "rb").read()
    problems = []
    if not raw.endswith(b"\r\n"):
        problems.append("the text does not end with CRLF")
    for n, line in enumerate(raw.split(b"\r\n")[:-1], 1):
        if b"\n" in line or b"\r" in line:
            problems.append("line %d: a bare CR or LF" % n)
        if len(line) > 75:
            problems.append("line %d: %d octets, more than 75" % (n, len(line)))
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append("line %d: folded inside a UTF-8 character" % n)
    try:
        cal = icalendar.Calendar.from_ical(raw.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - any failure to parse is the answer
        print(json.dumps({"problems": ["does not parse: %s" % e]}))
        return 2
    if cal.name != "VCALENDAR":
        problems.append("not a VCALENDAR")
    for prop in ("PRODID", "VERSION"):
        if prop not in cal:
            problems.append("VCALENDAR without %s" % prop)
    for ev in cal.walk("VEVENT"):
        for prop in ("UID", "DTSTAMP", "DTSTART", "DTEND", "SEQUENCE", "STATUS", "SUMMARY"):
            if prop not in ev:
                problems.append("VEVENT %s without %s" % (ev.get("UID"), prop))
    t0 = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = datetime.datetime.fromisoformat(stop.replace("Z", "+00:00"))
    occurrences = []
    for ev in recurring_ical_events.of(cal).between(t0, t1):
        occurrences.append({
            "uid": str(ev["UID"]),
            "start": utc(ev["DTSTART"].dt),
            "end": utc(ev["DTEND"].dt),
            "summary": str(ev.get("SUMMARY")),
            "status": str(ev.get("STATUS")),
            "sequence": int(ev.get("SEQUENCE", -1)),
        })
    occurrences.sort(key=lambda o: (o["start"], o["uid"]))
    print(json.dumps({
        "problems": problems,
        "calendar": {"version": str(cal.get("VERSION")), "prodid": str(cal.get("PRODID")),
                     "events": len(cal.walk("VEVENT"))},
        "occurrences": occurrences,
    }, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
