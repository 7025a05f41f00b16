package mailauth

import (
	"context"
	"io"

	"github.com/letterboxmail/letterbox/message"
)

type Checker struct{}

func (c *Checker) Check(ctx context.Context, env *message.Envelope, r io.Reader) (*message.Auth, error) {
	return nil, nil
}
