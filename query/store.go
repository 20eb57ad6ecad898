package query

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/erpstream/erpstream/internal/envelope"
)

// ClickHouseStore answers monitoring queries from ClickHouse. Values are always bound client-side
// (18.16 has no server-side parameters); SQL text is built only from fixed fragments. Lists collapse
// a row the projector wrote twice with LIMIT 1 BY on the row id rather than FINAL: FINAL merges
// every row of the range before the filter (250 ms for a 30-day error search on 18.16, 40 ms
// without). Counts come from the per-minute and per-hour aggregates, which receive every row
// exactly once, with sub-minute range edges read from the rows themselves (FINAL, a minute at most).
type ClickHouseStore struct {
	Conn driver.Conn
}

// cond accumulates WHERE clauses and their bound values.
type cond struct {
	sql  []string
	args []any
}

func (c *cond) add(sql string, args ...any) {
	c.sql = append(c.sql, sql)
	c.args = append(c.args, args...)
}

func (c *cond) where() string { return strings.Join(c.sql, " AND ") }

// scope restricts to the org and integration and to the filters every monitoring table has.
func (f Filter) scope(c *cond) {
	c.add("org_id = ?", f.OrgID)
	c.add("integration_id = ?", f.IntegrationID)
	if f.UseCaseType != "" {
		c.add("use_case_type = ?", f.UseCaseType)
	}
	if f.UseCaseID != nil {
		c.add("use_case_id = ?", *f.UseCaseID)
	}
	if len(f.Levels) > 0 {
		c.add("has(?, toString(level))", f.Levels)
	}
	if f.Code != "" {
		c.add("code = ?", f.Code)
	}
	if f.Codes != nil {
		c.add("has(?, code)", f.Codes)
	}
	if len(f.ExcludeCodes) > 0 {
		c.add("NOT has(?, code)", f.ExcludeCodes)
	}
}

// groupColumn maps a group_by to its column per table (nil: no grouping).
var groupColumns = map[string][3]string{ // rows, minute table, hour table
	"use_case_id":   {"use_case_id", "use_case_id", "use_case_id"},
	"use_case_type": {"use_case_type", "use_case_type", "use_case_type"},
	"level":         {"toString(level)", "toString(level)", "toString(level)"},
	"code":          {"code", "code", "code"},
	"date":          {"toString(toDate(created_at))", "toString(toDate(minute))", "toString(toDate(hour))"},
}

// span is one piece of a time range and the table that answers it.
type span struct {
	table    int // 0 rows, 1 minute table, 2 hour table
	from, to time.Time
}

// spans splits [from, to] (to inclusive, ms precision) into exact pieces: rows for the partial
// minutes at the edges, minutes up to whole hours, hours in the middle of long ranges.
func spans(from, to time.Time) []span {
	end := to.Add(time.Millisecond) // half-open [from, end)
	m1 := from.Truncate(time.Minute)
	if m1.Before(from) {
		m1 = m1.Add(time.Minute)
	}
	m2 := end.Truncate(time.Minute)
	if !m1.Before(m2) {
		return []span{{0, from, end}}
	}
	var out []span
	if from.Before(m1) {
		out = append(out, span{0, from, m1})
	}
	h1 := m1.Truncate(time.Hour)
	if h1.Before(m1) {
		h1 = h1.Add(time.Hour)
	}
	h2 := m2.Truncate(time.Hour)
	if m2.Sub(m1) >= 3*time.Hour && h1.Before(h2) {
		if m1.Before(h1) {
			out = append(out, span{1, m1, h1})
		}
		out = append(out, span{2, h1, h2})
		if h2.Before(m2) {
			out = append(out, span{1, h2, m2})
		}
	} else {
		out = append(out, span{1, m1, m2})
	}
	if m2.Before(end) {
		out = append(out, span{0, m2, end})
	}
	return out
}

type levelCount struct {
	group  string
	level  string
	n      uint64
	acks   uint64
	lastMs uint64
}

// counts returns counts per (group, level) over the range, exactly, plus the ACK_TIMEOUT count.
func (s *ClickHouseStore) counts(ctx context.Context, f Filter, groupBy string) ([]levelCount, uint64, error) {
	var out []levelCount
	var acks uint64
	for _, sp := range spans(f.From, f.To) {
		c := &cond{}
		f.scope(c)
		group := "''"
		if g, ok := groupColumns[groupBy]; ok {
			group = g[sp.table]
		}
		var q string
		switch sp.table {
		case 0:
			c.add("created_at >= toDateTime(?) AND created_at <= toDateTime(?)", sp.from.Unix(), sp.to.Unix())
			c.add("created_at_ms >= ? AND created_at_ms < ?", uint64(sp.from.UnixMilli()), uint64(sp.to.UnixMilli()))
			q = "SELECT " + group + " AS g, toString(level) AS lvl, count() AS n, countIf(code = 'ACK_TIMEOUT') AS acks, max(created_at_ms) AS last " +
				"FROM monitoring_events FINAL WHERE " + c.where() + " GROUP BY g, lvl"
		default:
			table, col := "monitoring_minute", "minute"
			if sp.table == 2 {
				table, col = "monitoring_hour", "hour"
			}
			c.add(col+" >= toDateTime(?) AND "+col+" < toDateTime(?)", sp.from.Unix(), sp.to.Unix())
			q = "SELECT " + group + " AS g, toString(level) AS lvl, countMerge(events) AS n, toUInt64(0) AS acks, " +
				"maxMerge(last_at_ms) AS last FROM " + table + " WHERE " + c.where() + " GROUP BY g, lvl"
			// ACK_TIMEOUT rows are counted by their code in the aggregates.
			if f.Code == "" || f.Code == "ACK_TIMEOUT" {
				g := f
				g.Code = "ACK_TIMEOUT"
				ac := &cond{}
				g.scope(ac)
				ac.add(col+" >= toDateTime(?) AND "+col+" < toDateTime(?)", sp.from.Unix(), sp.to.Unix())
				var n uint64
				if err := s.Conn.QueryRow(ctx, "SELECT countMerge(events) FROM "+table+" WHERE "+ac.where(), ac.args...).Scan(&n); err != nil {
					return nil, 0, fmt.Errorf("ack timeouts: %w", err)
				}
				acks += n
			}
		}
		rows, err := s.Conn.Query(ctx, q, c.args...)
		if err != nil {
			return nil, 0, fmt.Errorf("counts: %w", err)
		}
		for rows.Next() {
			var lc levelCount
			if err := rows.Scan(&lc.group, &lc.level, &lc.n, &lc.acks, &lc.lastMs); err != nil {
				rows.Close()
				return nil, 0, err
			}
			acks += lc.acks
			out = append(out, lc)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
	}
	return out, acks, nil
}

// Stats counts monitoring events per level in [from, to], with an optional breakdown.
func (s *ClickHouseStore) Stats(ctx context.Context, f Filter) (Stats, error) {
	return s.StatsBy(ctx, f, "")
}

// StatsBy is Stats with a breakdown by group_by (use_case_id, use_case_type, level, code, date).
func (s *ClickHouseStore) StatsBy(ctx context.Context, f Filter, groupBy string) (Stats, error) {
	counts, acks, err := s.counts(ctx, f, groupBy)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{AckTimeouts: acks}
	groups := map[string]*Stats{}
	for _, lc := range counts {
		st.add(lc)
		if groupBy != "" {
			g := groups[lc.group]
			if g == nil {
				g = &Stats{}
				groups[lc.group] = g
			}
			g.add(lc)
		}
	}
	if groupBy != "" {
		keys := make([]string, 0, len(groups))
		for k := range groups {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			st.Breakdown = append(st.Breakdown, Group{Key: k, Stats: *groups[k]})
		}
	}
	return st, nil
}

func (st *Stats) add(lc levelCount) {
	st.Total += lc.n
	switch envelope.Level(lc.level) {
	case envelope.LevelSuccess:
		st.Success += lc.n
	case envelope.LevelError:
		st.Error += lc.n
		if lc.n > 0 {
			t := time.UnixMilli(int64(lc.lastMs)).UTC()
			if st.LastErrorAt == nil || t.After(*st.LastErrorAt) {
				st.LastErrorAt = &t
			}
		}
	case envelope.LevelWarning:
		st.Warning += lc.n
	default: // skipped and info: the 0.58.0 API has no info level
		st.Skipped += lc.n
	}
}

// TimeSeries counts per bucket of step (a multiple of a minute) over [from, to]; buckets are
// aligned to step (UTC) and cover whole minutes.
func (s *ClickHouseStore) TimeSeries(ctx context.Context, f Filter, step time.Duration) ([]Bucket, error) {
	table, col := "monitoring_minute", "minute"
	if step >= time.Hour {
		table, col = "monitoring_hour", "hour"
	}
	sec := int64(step / time.Second)
	from := f.From.Truncate(step)
	c := &cond{}
	f.scope(c)
	c.add(col+" >= toDateTime(?) AND "+col+" <= toDateTime(?)", from.Unix(), f.To.Unix())
	q := "SELECT intDiv(toUInt32(" + col + "), ?) * ? AS b, toString(level) AS lvl, countMerge(events) AS n FROM " + table +
		" WHERE " + c.where() + " GROUP BY b, lvl ORDER BY b"
	rows, err := s.Conn.Query(ctx, q, append([]any{sec, sec}, c.args...)...)
	if err != nil {
		return nil, fmt.Errorf("time series: %w", err)
	}
	defer rows.Close()
	byStart := map[int64]*Bucket{}
	for rows.Next() {
		var b uint64
		var lvl string
		var n uint64
		if err := rows.Scan(&b, &lvl, &n); err != nil {
			return nil, err
		}
		bk := byStart[int64(b)]
		if bk == nil {
			bk = &Bucket{Start: time.Unix(int64(b), 0).UTC()}
			byStart[int64(b)] = bk
		}
		bk.Stats.add(levelCount{level: lvl, n: n})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Every bucket, zero-filled (no WITH FILL on 18.16).
	var out []Bucket
	for t := from; !t.After(f.To); t = t.Add(step) {
		if bk := byStart[t.Unix()]; bk != nil {
			out = append(out, *bk)
		} else {
			out = append(out, Bucket{Start: t})
		}
	}
	return out, nil
}

// Events lists monitoring events newest first, after the cursor when one is given.
func (s *ClickHouseStore) Events(ctx context.Context, f Filter, limit int, after *Cursor) ([]envelope.MonitoringEvent, error) {
	c := &cond{}
	f.scope(c)
	c.add("created_at >= toDateTime(?) AND created_at <= toDateTime(?)", f.From.Unix(), f.To.Unix())
	c.add("created_at_ms >= ? AND created_at_ms <= ?", uint64(f.From.UnixMilli()), uint64(f.To.UnixMilli()))
	if f.EventID != "" {
		c.add("event_id = ?", f.EventID)
	}
	if f.CorrelationID != "" {
		c.add("correlation_id = ?", f.CorrelationID)
	}
	keys := make([]string, 0, len(f.Detail))
	for k := range f.Detail {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.add("visitParamExtractString(detail, ?) = ?", k, f.Detail[k])
	}
	if after != nil {
		c.add("created_at <= toDateTime(?)", after.CreatedAtMs/1000)
		c.add("(created_at_ms, id) < (?, ?)", uint64(after.CreatedAtMs), after.ID)
	}
	return s.monitoringRows(ctx, "WHERE "+c.where()+" ORDER BY created_at_ms DESC, id DESC LIMIT 1 BY id LIMIT ?", append(c.args, limit)...)
}

func (s *ClickHouseStore) monitoringRows(ctx context.Context, tail string, args ...any) ([]envelope.MonitoringEvent, error) {
	rows, err := s.Conn.Query(ctx, `SELECT id, org_id, integration_id, event_id, correlation_id, use_case_id, use_case_type,
		toString(level), code, message, detail, created_at_ms FROM monitoring_events `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("monitoring events: %w", err)
	}
	defer rows.Close()
	var out []envelope.MonitoringEvent
	for rows.Next() {
		var m envelope.MonitoringEvent
		var lvl, detail string
		var created uint64
		if err := rows.Scan(&m.ID, &m.OrgID, &m.IntegrationID, &m.EventID, &m.CorrelationID, &m.UseCaseID,
			&m.UseCaseType, &lvl, &m.Code, &m.Message, &detail, &created); err != nil {
			return nil, fmt.Errorf("monitoring events scan: %w", err)
		}
		m.Level = envelope.Level(lvl)
		m.CreatedAtMs = int64(created)
		if detail != "" && detail != "null" {
			m.Detail = json.RawMessage(detail)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Trace returns every monitoring row of one event, oldest first, and its raw event when kept.
func (s *ClickHouseStore) Trace(ctx context.Context, org, integrationID, eventID string) ([]envelope.MonitoringEvent, *envelope.Event, error) {
	c := &cond{}
	c.add("org_id = ?", org)
	c.add("integration_id = ?", integrationID)
	c.add("event_id = ?", eventID)
	if at, ok := eventTime(eventID); ok {
		// Rows come after the event's receipt: bound the scan to the partitions that can hold them.
		c.add("created_at >= toDateTime(?)", at.Add(-time.Minute).Unix())
	}
	rows, err := s.monitoringRows(ctx, "WHERE "+c.where()+" ORDER BY created_at_ms, id LIMIT 1 BY id LIMIT 1000", c.args...)
	if err != nil {
		return nil, nil, err
	}
	raw, err := s.RawEventsByID(ctx, org, integrationID, []string{eventID})
	if err != nil {
		return nil, nil, err
	}
	var ev *envelope.Event
	if e, ok := raw[eventID]; ok {
		ev = &e
	}
	return rows, ev, nil
}

// RawFilter selects stored raw events (queryEvents).
type RawFilter struct {
	OrgID, IntegrationID string
	From, To             time.Time
	EventID              string
	EventType            string
	CorrelationID        string
	EventName            string
	// Failed keeps only the events whose mapping failed: an error row of the inbound lane.
	Failed bool
}

// RawCursor is the keyset position of queryEvents.
type RawCursor struct {
	ReceivedAtUs int64
	EventID      string
}

const rawColumns = `org_id, integration_id, event_id, use_case_id, use_case_slug, event_name, event_type, timestamp, format,
	payload, deduplication_id, correlation_id, replay, received_at_us`

func scanRaw(rows driver.Rows) (envelope.Event, error) {
	var e envelope.Event
	var payload string
	var replay uint8
	var us uint64
	err := rows.Scan(&e.OrgID, &e.IntegrationID, &e.EventID, &e.UseCaseID, &e.UseCaseSlug, &e.EventName, &e.EventType,
		&e.Timestamp, &e.Format, &payload, &e.DeduplicationID, &e.CorrelationID, &replay, &us)
	e.Payload = json.RawMessage(payload)
	e.Replay = replay == 1
	e.ReceivedAtUs = int64(us)
	return e, err
}

// RawEvents lists received events newest first.
func (s *ClickHouseStore) RawEvents(ctx context.Context, f RawFilter, limit int, after *RawCursor) ([]envelope.Event, error) {
	c := &cond{}
	c.add("org_id = ?", f.OrgID)
	c.add("integration_id = ?", f.IntegrationID)
	c.add("received_at >= toDateTime(?) AND received_at <= toDateTime(?)", f.From.Unix(), f.To.Unix())
	for col, v := range map[string]string{"event_id": f.EventID, "event_type": f.EventType, "correlation_id": f.CorrelationID, "event_name": f.EventName} {
		if v != "" {
			c.add(col+" = ?", v)
		}
	}
	if after != nil {
		c.add("received_at <= toDateTime(?)", after.ReceivedAtUs/1_000_000)
		c.add("(received_at_us, event_id) < (?, ?)", uint64(after.ReceivedAtUs), after.EventID)
	}
	if f.Failed {
		// An event's outcome row is written after its receipt, so the range bounds its scan too.
		c.add("event_id IN (SELECT event_id FROM monitoring_events WHERE org_id = ? AND integration_id = ? AND use_case_type = 'inbound'"+
			" AND level = 'error' AND created_at >= toDateTime(?))", f.OrgID, f.IntegrationID, f.From.Unix())
	}
	rows, err := s.Conn.Query(ctx, "SELECT "+rawColumns+" FROM raw_events WHERE "+c.where()+
		" ORDER BY received_at_us DESC, event_id DESC LIMIT 1 BY event_id LIMIT ?", append(c.args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("raw events: %w", err)
	}
	defer rows.Close()
	var out []envelope.Event
	for rows.Next() {
		e, err := scanRaw(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RawEventsByID finds stored raw events by id (their ULIDs bound the time range scanned).
func (s *ClickHouseStore) RawEventsByID(ctx context.Context, org, integrationID string, eventIDs []string) (map[string]envelope.Event, error) {
	out := map[string]envelope.Event{}
	if len(eventIDs) == 0 {
		return out, nil
	}
	c := &cond{}
	c.add("org_id = ?", org)
	c.add("integration_id = ?", integrationID)
	c.add("has(?, event_id)", eventIDs)
	lo, hi := time.Time{}, time.Time{}
	for _, id := range eventIDs {
		if at, ok := eventTime(id); ok {
			if lo.IsZero() || at.Before(lo) {
				lo = at
			}
			if hi.IsZero() || at.After(hi) {
				hi = at
			}
		}
	}
	if !lo.IsZero() {
		c.add("received_at >= toDateTime(?) AND received_at <= toDateTime(?)", lo.Add(-time.Minute).Unix(), hi.Add(time.Minute).Unix())
	}
	rows, err := s.Conn.Query(ctx, "SELECT "+rawColumns+" FROM raw_events FINAL WHERE "+c.where(), c.args...)
	if err != nil {
		return nil, fmt.Errorf("raw events by id: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanRaw(rows)
		if err != nil {
			return nil, err
		}
		out[e.EventID] = e
	}
	return out, rows.Err()
}

// AccessFilter selects access log rows.
type AccessFilter struct {
	OrgID, TokenID, Service, Method, Path string
	TokenIDs                              []string // the integration's tokens
	Status                                int
	From, To                              time.Time
}

// AccessLogs lists API calls newest first.
func (s *ClickHouseStore) AccessLogs(ctx context.Context, f AccessFilter, limit int, after *Cursor) ([]envelope.AccessLog, error) {
	if f.TokenID == "" && len(f.TokenIDs) == 0 {
		return nil, nil // no tokens, no calls (and 18.16 cannot type an empty array literal)
	}
	c := &cond{}
	c.add("org_id = ?", f.OrgID)
	c.add("at >= toDateTime(?) AND at <= toDateTime(?)", f.From.Unix(), f.To.Unix())
	if f.TokenID != "" {
		c.add("token_id = ?", f.TokenID)
	} else {
		c.add("has(?, token_id)", f.TokenIDs)
	}
	if f.Service != "" {
		c.add("service = ?", f.Service)
	}
	if f.Method != "" {
		c.add("method = ?", f.Method)
	}
	if f.Path != "" {
		c.add("positionCaseInsensitive(path, ?) > 0", f.Path)
	}
	if f.Status != 0 {
		c.add("status = ?", uint16(f.Status))
	}
	if after != nil {
		c.add("(at_ms, request_id) < (?, ?)", uint64(after.CreatedAtMs), after.ID)
	}
	rows, err := s.Conn.Query(ctx, `SELECT org_id, request_id, token_id, service, method, path, route, status, latency_ms,
		integration_id, at_ms FROM access_logs WHERE `+c.where()+" ORDER BY at_ms DESC, request_id DESC LIMIT 1 BY request_id LIMIT ?", append(c.args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("access logs: %w", err)
	}
	defer rows.Close()
	var out []envelope.AccessLog
	for rows.Next() {
		var a envelope.AccessLog
		var status uint16
		var latency uint32
		var at uint64
		if err := rows.Scan(&a.OrgID, &a.RequestID, &a.TokenID, &a.Service, &a.Method, &a.Path, &a.Route, &status, &latency, &a.IntegrationID, &at); err != nil {
			return nil, err
		}
		a.Status, a.LatencyMs, a.AtMs = int(status), int64(latency), int64(at)
		out = append(out, a)
	}
	return out, rows.Err()
}

// eventTime reads the receive time out of an event id ("evt_" + ULID).
func eventTime(id string) (time.Time, bool) {
	id = strings.TrimPrefix(id, "evt_")
	if len(id) != 26 {
		return time.Time{}, false
	}
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var ms uint64
	for _, c := range id[:10] {
		i := strings.IndexRune(alphabet, c)
		if i < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(i)
	}
	// The first 10 characters are the 48-bit millisecond timestamp.
	return time.UnixMilli(int64(ms)).UTC(), true
}
