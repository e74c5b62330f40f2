package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newRegistry returns the registry /metrics serves: the fwdmux collector and the Go and
// process collectors.
func newRegistry(s *Server) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		newCollector(s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// metricDef is one fwdmux_* metric; metricDefs is the list the README documents (a test
// holds the two together).
type metricDef struct {
	name   string
	kind   prometheus.ValueType
	help   string
	labels []string
}

var (
	serverLabels = []string{"server", "address"}
	fileLabels   = []string{"target", "tag", "path"}
)

const (
	mReady                    = "fwdmux_ready"
	mStartTime                = "fwdmux_start_time_seconds"
	mRecvConnections          = "fwdmux_receiver_connections_total"
	mRecvActive               = "fwdmux_receiver_active_connections"
	mRecvEvents               = "fwdmux_receiver_events_total"
	mRecvBytes                = "fwdmux_receiver_bytes_total"
	mRecvFrames               = "fwdmux_receiver_frames_total"
	mRecvAcks                 = "fwdmux_receiver_acks_total"
	mRecvErrors               = "fwdmux_receiver_errors_total"
	mRingChunks               = "fwdmux_ring_chunks"
	mRingBytes                = "fwdmux_ring_bytes"
	mRingQueued               = "fwdmux_ring_queued_chunks"
	mRingCapBytes             = "fwdmux_ring_capacity_bytes"
	mRingCapChunks            = "fwdmux_ring_capacity_chunks"
	mRingBlocked              = "fwdmux_ring_blocked_seconds_total"
	mRingPutChunks            = "fwdmux_ring_put_chunks_total"
	mRingPutEvents            = "fwdmux_ring_put_events_total"
	mRingDoneChunks           = "fwdmux_ring_done_chunks_total"
	mRingRequeued             = "fwdmux_ring_requeued_chunks_total"
	mRingDroppedChunks        = "fwdmux_ring_dropped_chunks_total"
	mRingDroppedEvents        = "fwdmux_ring_dropped_events_total"
	mServerEligible           = "fwdmux_server_eligible"
	mServerWeight             = "fwdmux_server_weight"
	mServerStandby            = "fwdmux_server_standby"
	mServerPhi                = "fwdmux_server_phi"
	mServerBreaker            = "fwdmux_server_breaker_state"
	mServerInFlight           = "fwdmux_server_in_flight_chunks"
	mServerSentChunks         = "fwdmux_server_sent_chunks_total"
	mServerSentEvents         = "fwdmux_server_sent_events_total"
	mServerSentBytes          = "fwdmux_server_sent_bytes_total"
	mServerAcks               = "fwdmux_server_acks_total"
	mServerRetries            = "fwdmux_server_retries_total"
	mServerRTT                = "fwdmux_server_last_rtt_seconds"
	mServerLastErrorTimestamp = "fwdmux_server_last_error_timestamp_seconds"
	mFileReadOffset           = "fwdmux_file_read_offset_bytes"
	mFileCommittedOffset      = "fwdmux_file_committed_offset_bytes"
	mFileSize                 = "fwdmux_file_size_bytes"
	mFileLag                  = "fwdmux_file_lag_bytes"
	mFileLines                = "fwdmux_file_lines_total"
	mFileBytes                = "fwdmux_file_read_bytes_total"
	mFileParseErrors          = "fwdmux_file_parse_errors_total"
	mFileTruncated            = "fwdmux_file_truncated_lines_total"
	mSentEvents               = "fwdmux_sent_events_total"
	mSentBytes                = "fwdmux_sent_bytes_total"
	mSentChunks               = "fwdmux_sent_chunks_total"
)

var metricDefs = []metricDef{
	{mReady, prometheus.GaugeValue, "1 when /ready answers 200, else 0.", nil},
	{mStartTime, prometheus.GaugeValue, "Start time of the process, seconds since the Unix epoch.", nil},

	{mRecvConnections, prometheus.CounterValue, "Forward connections accepted.", nil},
	{mRecvActive, prometheus.GaugeValue, "Forward connections open now.", nil},
	{mRecvEvents, prometheus.CounterValue, "Events received on the forward listener.", nil},
	{mRecvBytes, prometheus.CounterValue, "Bytes received on the forward listener.", nil},
	{mRecvFrames, prometheus.CounterValue, "Forward protocol frames received.", nil},
	{mRecvAcks, prometheus.CounterValue, "Acks sent to forward clients.", nil},
	{mRecvErrors, prometheus.CounterValue, "Forward connections closed on an error, by reason.", []string{"reason"}},

	{mRingChunks, prometheus.GaugeValue, "Chunks accepted by the ring and not finished (queued or in flight).", nil},
	{mRingBytes, prometheus.GaugeValue, "Bytes of the chunks accepted by the ring and not finished.", nil},
	{mRingQueued, prometheus.GaugeValue, "Chunks queued in the ring, not yet taken by the output.", nil},
	{mRingCapBytes, prometheus.GaugeValue, "Byte capacity of the ring.", nil},
	{mRingCapChunks, prometheus.GaugeValue, "Chunk capacity of the ring.", nil},
	{mRingBlocked, prometheus.CounterValue, "Time producers spent blocked on a full ring (backpressure).", nil},
	{mRingPutChunks, prometheus.CounterValue, "Chunks put into the ring.", nil},
	{mRingPutEvents, prometheus.CounterValue, "Events put into the ring.", nil},
	{mRingDoneChunks, prometheus.CounterValue, "Chunks finished (acked, printed or dropped).", nil},
	{mRingRequeued, prometheus.CounterValue, "Chunks put back for another attempt.", nil},
	{mRingDroppedChunks, prometheus.CounterValue, "Chunks dropped by an overflow policy.", nil},
	{mRingDroppedEvents, prometheus.CounterValue, "Events dropped by an overflow policy.", nil},

	{mServerEligible, prometheus.GaugeValue, "1 when the upstream may be picked for the next chunk.", serverLabels},
	{mServerWeight, prometheus.GaugeValue, "Configured weight of the upstream.", serverLabels},
	{mServerStandby, prometheus.GaugeValue, "1 for a standby upstream.", serverLabels},
	{mServerPhi, prometheus.GaugeValue, "Phi of the accrual failure detector.", serverLabels},
	{mServerBreaker, prometheus.GaugeValue, "1 for the circuit breaker's current state (closed, half-open, open), 0 for the others.", append(serverLabels, "state")},
	{mServerInFlight, prometheus.GaugeValue, "Chunks sent and waiting for their ack.", serverLabels},
	{mServerSentChunks, prometheus.CounterValue, "Chunks sent to the upstream.", serverLabels},
	{mServerSentEvents, prometheus.CounterValue, "Events sent to the upstream.", serverLabels},
	{mServerSentBytes, prometheus.CounterValue, "Bytes sent to the upstream.", serverLabels},
	{mServerAcks, prometheus.CounterValue, "Acks received from the upstream.", serverLabels},
	{mServerRetries, prometheus.CounterValue, "Chunks re-sent after a failure or a missing ack.", serverLabels},
	{mServerRTT, prometheus.GaugeValue, "Last round trip time (chunk to ack, or heartbeat).", serverLabels},
	{mServerLastErrorTimestamp, prometheus.GaugeValue, "Time of the upstream's last error, seconds since the Unix epoch (0: none).", serverLabels},

	{mFileReadOffset, prometheus.GaugeValue, "Offset read so far in the file.", fileLabels},
	{mFileCommittedOffset, prometheus.GaugeValue, "Offset acked upstream and saved in the position file.", fileLabels},
	{mFileSize, prometheus.GaugeValue, "Size of the file.", fileLabels},
	{mFileLag, prometheus.GaugeValue, "Bytes of the file not yet committed.", fileLabels},
	{mFileLines, prometheus.CounterValue, "Lines read from the file.", fileLabels},
	{mFileBytes, prometheus.CounterValue, "Bytes read from the file.", fileLabels},
	{mFileParseErrors, prometheus.CounterValue, "Lines the parser rejected.", fileLabels},
	{mFileTruncated, prometheus.CounterValue, "Lines cut at max_line_bytes.", fileLabels},

	{mSentEvents, prometheus.CounterValue, "Events delivered (acked upstream or printed), by tag.", []string{"tag"}},
	{mSentBytes, prometheus.CounterValue, "Bytes delivered, by tag.", []string{"tag"}},
	{mSentChunks, prometheus.CounterValue, "Chunks delivered, by tag.", []string{"tag"}},
}

// collector reads one snapshot per scrape and turns it into const metrics, so the
// components keep plain atomic counters and know nothing about Prometheus.
type collector struct {
	s     *Server
	descs map[string]*prometheus.Desc
	kinds map[string]prometheus.ValueType
}

func newCollector(s *Server) *collector {
	c := &collector{s: s, descs: map[string]*prometheus.Desc{}, kinds: map[string]prometheus.ValueType{}}
	for _, d := range metricDefs {
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, d.labels, nil)
		c.kinds[d.name] = d.kind
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDefs {
		ch <- c.descs[d.name]
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.s.snapshot()
	emit := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], c.kinds[name], v, labels...)
	}
	ready, _ := c.s.ready()
	if c.s.draining.Load() {
		ready = false
	}
	emit(mReady, b2f(ready))
	emit(mStartTime, float64(snap.StartTime.UnixNano())/1e9)

	rc := snap.Receiver
	emit(mRecvConnections, float64(rc.Connections))
	emit(mRecvActive, float64(rc.ActiveConnections))
	emit(mRecvEvents, float64(rc.Events))
	emit(mRecvBytes, float64(rc.Bytes))
	emit(mRecvFrames, float64(rc.Frames))
	emit(mRecvAcks, float64(rc.Acks))
	for reason, n := range rc.Errors {
		emit(mRecvErrors, float64(n), reason)
	}

	rg := snap.Ring
	emit(mRingChunks, float64(rg.Chunks))
	emit(mRingBytes, float64(rg.Bytes))
	emit(mRingQueued, float64(rg.Queued))
	emit(mRingCapBytes, float64(rg.CapacityBytes))
	emit(mRingCapChunks, float64(rg.CapacityChunks))
	emit(mRingBlocked, rg.BlockedSeconds)
	emit(mRingPutChunks, float64(rg.PutChunks))
	emit(mRingPutEvents, float64(rg.PutEvents))
	emit(mRingDoneChunks, float64(rg.DoneChunks))
	emit(mRingRequeued, float64(rg.Requeued))
	emit(mRingDroppedChunks, float64(rg.DroppedChunks))
	emit(mRingDroppedEvents, float64(rg.DroppedEvents))

	seen := map[string]bool{}
	for _, sv := range snap.Servers {
		if seen[sv.ID] { // a duplicate label set would fail the whole scrape
			continue
		}
		seen[sv.ID] = true
		l := []string{sv.ID, sv.Address}
		emit(mServerEligible, b2f(sv.Eligible), l...)
		emit(mServerWeight, float64(sv.Weight), l...)
		emit(mServerStandby, b2f(sv.Standby), l...)
		emit(mServerPhi, sv.Phi, l...)
		for _, state := range []string{BreakerClosed, BreakerHalfOpen, BreakerOpen} {
			emit(mServerBreaker, b2f(sv.Breaker == state), append(l, state)...)
		}
		emit(mServerInFlight, float64(sv.InFlightChunks), l...)
		emit(mServerSentChunks, float64(sv.SentChunks), l...)
		emit(mServerSentEvents, float64(sv.SentEvents), l...)
		emit(mServerSentBytes, float64(sv.SentBytes), l...)
		emit(mServerAcks, float64(sv.Acks), l...)
		emit(mServerRetries, float64(sv.Retries), l...)
		emit(mServerRTT, sv.LastRTTMillis/1000, l...)
		var errAt float64
		if sv.LastErrorTime != nil {
			errAt = float64(sv.LastErrorTime.UnixNano()) / 1e9
		}
		emit(mServerLastErrorTimestamp, errAt, l...)
	}

	clear(seen)
	for _, f := range snap.Files {
		key := f.TargetID + "\x00" + f.Tag + "\x00" + f.Path
		if seen[key] {
			continue
		}
		seen[key] = true
		l := []string{f.TargetID, f.Tag, f.Path}
		emit(mFileReadOffset, float64(f.ReadOffset), l...)
		emit(mFileCommittedOffset, float64(f.CommittedOffset), l...)
		emit(mFileSize, float64(f.Size), l...)
		emit(mFileLag, float64(f.LagBytes), l...)
		emit(mFileLines, float64(f.Lines), l...)
		emit(mFileBytes, float64(f.Bytes), l...)
		emit(mFileParseErrors, float64(f.ParseErrors), l...)
		emit(mFileTruncated, float64(f.TruncatedLines), l...)
	}

	for tag, v := range snap.Sent {
		emit(mSentEvents, float64(v.Events), tag)
		emit(mSentBytes, float64(v.Bytes), tag)
		emit(mSentChunks, float64(v.Chunks), tag)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
