// Package submit is the one path by which an accepted message enters the
// spool: SMTP injection (engine/listener) and HTTP injection both call
// Pipeline.Submit. Before the synced write, the pipeline runs its
// transforms in order: header additions first (List-Unsubscribe,
// Feedback-ID), DKIM signing last, so that a signature covers what was
// added and each message is signed exactly once, at spool time.
package submit

import (
	"context"

	"github.com/sluice-mta/sluice/engine/spool"
)

// Spooler is the part of the spool a pipeline needs.
type Spooler interface {
	Put(ctx context.Context, m *spool.Message, body []byte) error
}

// Enqueuer receives every message once it is durable.
type Enqueuer interface {
	Enqueue(m *spool.Message)
}

// BodyEnqueuer is an Enqueuer that also takes the body just spooled, so
// that it need not read it back (queue.Scheduler: the acct header_*
// columns of r records). The pipeline uses it when its Queue has it.
type BodyEnqueuer interface {
	EnqueueBody(m *spool.Message, body []byte)
}

// Transform rewrites a message before it is spooled. It may change m's
// envelope (m.Env.Size is set by the pipeline afterwards) and returns the
// body to spool, which may be body itself. An error refuses the message;
// a *reply.Error carries the SMTP reply the client should get.
type Transform interface {
	Transform(ctx context.Context, m *spool.Message, body []byte) ([]byte, error)
}

// TransformFunc adapts a function to Transform.
type TransformFunc func(ctx context.Context, m *spool.Message, body []byte) ([]byte, error)

// Transform calls f.
func (f TransformFunc) Transform(ctx context.Context, m *spool.Message, body []byte) ([]byte, error) {
	return f(ctx, m, body)
}

// Pipeline runs the transforms, makes the message durable, then queues it.
type Pipeline struct {
	Spool      Spooler
	Queue      Enqueuer
	Transforms []Transform // in order; nil is fine
}

// Submit transforms, spools (fsynced) and enqueues m. When it returns nil
// the message is durable and the caller may acknowledge it.
func (p *Pipeline) Submit(ctx context.Context, m *spool.Message, body []byte) error {
	for _, t := range p.Transforms {
		b, err := t.Transform(ctx, m, body)
		if err != nil {
			return err
		}
		body = b
	}
	m.Env.Size = int64(len(body))
	if err := p.Spool.Put(ctx, m, body); err != nil {
		return err
	}
	p.enqueue(m, body)
	return nil
}

// enqueue hands m to the queue, with its body when the queue takes it.
func (p *Pipeline) enqueue(m *spool.Message, body []byte) {
	if q, ok := p.Queue.(BodyEnqueuer); ok {
		q.EnqueueBody(m, body)
		return
	}
	p.Queue.Enqueue(m)
}
