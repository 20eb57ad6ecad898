package processor

// SetCatchUpGate makes every catch-up of a partition given to p call gate first (tests hold a
// catch-up open with it).
func (p *Processor) SetCatchUpGate(gate func(parts []int32)) { p.catchUpGate = gate }

// LockedBuffer is a log the Kafka client's goroutines write to as well (syncBuffer).
type LockedBuffer = syncBuffer
