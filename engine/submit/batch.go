package submit

import (
	"context"
	"runtime"
	"sync"

	"github.com/sluice-mta/sluice/engine/spool"
)

// BatchSpooler is a spool that makes many messages durable at once, all or
// nothing, with a few fsyncs instead of one per message (spool.Store).
type BatchSpooler interface {
	PutBatch(ctx context.Context, ms []*spool.Message, bodies [][]byte) error
}

// SubmitBatch is Submit for many messages, as HTTP injection hands them
// over: each message runs the transforms (in parallel; a transform error
// refuses that message only and is returned in refused[i]), then the rest
// are spooled together and, once durable, enqueued. A non-nil err is a
// spool failure: with a BatchSpooler none of the messages was kept or
// queued; otherwise Put runs message by message and the first failure
// stops it, the ones before it staying queued.
func (p *Pipeline) SubmitBatch(ctx context.Context, ms []*spool.Message, bodies [][]byte) (refused []error, err error) {
	refused = make([]error, len(ms))
	if len(p.Transforms) > 0 {
		p.transformAll(ctx, ms, bodies, refused)
	}
	keep := make([]*spool.Message, 0, len(ms))
	keepBodies := make([][]byte, 0, len(ms))
	for i, m := range ms {
		if refused[i] == nil {
			m.Env.Size = int64(len(bodies[i]))
			keep = append(keep, m)
			keepBodies = append(keepBodies, bodies[i])
		}
	}
	if len(keep) == 0 {
		return refused, nil
	}
	if bs, ok := p.Spool.(BatchSpooler); ok {
		if err := bs.PutBatch(ctx, keep, keepBodies); err != nil {
			return refused, err
		}
		for i, m := range keep {
			p.enqueue(m, keepBodies[i])
		}
		return refused, nil
	}
	for i, m := range keep {
		if err := p.Spool.Put(ctx, m, keepBodies[i]); err != nil {
			return refused, err
		}
		p.enqueue(m, keepBodies[i])
	}
	return refused, nil
}

// transformAll runs the transforms on every message, spread over the CPUs
// (DKIM signing dominates when it is on).
func (p *Pipeline) transformAll(ctx context.Context, ms []*spool.Message, bodies [][]byte, refused []error) {
	workers := min(runtime.GOMAXPROCS(0), len(ms))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(ms); i += workers {
				body := bodies[i]
				for _, t := range p.Transforms {
					b, err := t.Transform(ctx, ms[i], body)
					if err != nil {
						refused[i] = err
						break
					}
					body = b
				}
				bodies[i] = body
			}
		}()
	}
	wg.Wait()
}
