package mailauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/letterboxmail/letterbox/internal/dkimcanon"
	"github.com/letterboxmail/letterbox/message"
)

// maxARCInstances is the highest instance allowed (RFC 8617 §4.2.1).
const maxARCInstances = 50

// arcSet is one ARC set (RFC 8617 §4.1).
type arcSet struct {
	aar, ams, seal *dkimcanon.Field
	amsTags        map[string]string
	sealTags       map[string]string
}

// arcPlan is what ARC validation needs before the body streams: the chain
// and the hasher for the newest AMS's body hash.
type arcPlan struct {
	sets     []arcSet // index i holds instance i+1
	err      error    // the chain's structure is invalid
	bodyHash *dkimcanon.BodyHasher
}

// prepareARC collects the ARC sets and checks their structure (RFC 8617
// §5.2 steps 1 and 3).
func (c *Checker) prepareARC(fields []dkimcanon.Field) *arcPlan {
	plan := &arcPlan{}
	byInstance := map[int]*arcSet{}
	top := 0
	for i := range fields {
		f := &fields[i]
		kind := dkimcanon.ARCMember(f.Name)
		if kind < 0 {
			continue
		}
		var inst int
		var tags map[string]string
		if kind == dkimcanon.ARCAuthenticationResults {
			// "i=N; authserv-id; results": only the instance is a tag.
			v := strings.TrimSpace(f.Value())
			first, _, _ := strings.Cut(v, ";")
			k, val, _ := strings.Cut(first, "=")
			if strings.TrimSpace(k) != "i" {
				plan.err = errors.New("ARC-Authentication-Results without i=")
				continue
			}
			inst, _ = strconv.Atoi(stripSpace(val))
		} else {
			var err error
			tags, err = parseTags(f.Value())
			if err != nil {
				plan.err = fmt.Errorf("%s: %v", f.Name, err)
			}
			inst, _ = strconv.Atoi(tags["i"])
		}
		if inst < 1 || inst > maxARCInstances {
			plan.err = fmt.Errorf("%s: invalid instance", f.Name)
			continue
		}
		s := byInstance[inst]
		if s == nil {
			s = &arcSet{}
			byInstance[inst] = s
		}
		dup := false
		switch kind {
		case dkimcanon.ARCAuthenticationResults:
			dup = s.aar != nil
			s.aar = f
		case dkimcanon.ARCMessageSignature:
			dup = s.ams != nil
			s.ams, s.amsTags = f, tags
		case dkimcanon.ARCSeal:
			dup = s.seal != nil
			s.seal, s.sealTags = f, tags
		}
		if dup {
			plan.err = fmt.Errorf("instance %d has more than one %s", inst, f.Name)
		}
		top = max(top, inst)
	}
	if top == 0 {
		return plan
	}
	for i := 1; i <= top; i++ {
		s := byInstance[i]
		if s == nil || s.aar == nil || s.ams == nil || s.seal == nil {
			if plan.err == nil {
				plan.err = fmt.Errorf("ARC set %d incomplete or missing", i)
			}
			plan.sets = append(plan.sets, arcSet{})
			continue
		}
		plan.sets = append(plan.sets, *s)
	}
	if plan.err == nil {
		ams := plan.sets[top-1].amsTags
		_, bodyCanon := dkimcanon.ParseAlgorithms(ams["c"])
		// A relaxed body hash drops every CR, a simple one keeps bare CRs.
		bareCR := dkimcanon.CRContent
		if bodyCanon == dkimcanon.Relaxed {
			bareCR = dkimcanon.CRIgnored
		}
		plan.bodyHash = dkimcanon.NewBodyHasher(sha256.New(), bodyCanon, bareCR)
	}
	return plan
}

// verifyARC validates the chain (RFC 8617 §5.2).
func (c *Checker) verifyARC(ctx context.Context, fields []dkimcanon.Field, plan *arcPlan) *message.ARCResult {
	n := len(plan.sets)
	if n == 0 && plan.err == nil {
		return &message.ARCResult{Result: None}
	}
	res := &message.ARCResult{Instances: n}
	fail := func(format string, args ...any) *message.ARCResult {
		res.Result, res.Reason = Fail, fmt.Sprintf(format, args...)
		return res
	}
	if plan.err != nil {
		return fail("%v", plan.err)
	}
	// Step 2: the newest seal's verdict.
	if cv := plan.sets[n-1].sealTags["cv"]; cv == "fail" {
		return fail("chain marked failed at instance %d", n)
	}
	for i, s := range plan.sets {
		want := "pass"
		if i == 0 {
			want = "none"
		}
		if s.sealTags["cv"] != want {
			return fail("ARC-Seal i=%d has cv=%s, want %s", i+1, s.sealTags["cv"], want)
		}
	}
	// Step 4: the newest AMS.
	if err := c.verifyAMS(ctx, fields, plan.sets[n-1], plan.bodyHash.Sum()); err != nil {
		var te tempError
		if errors.As(err, &te) {
			res.Result, res.Reason = TempError, cleanReason(err.Error())
			return res
		}
		return fail("ARC-Message-Signature i=%d: %v", n, err)
	}
	// Step 6: every seal, newest first.
	for i := n; i >= 1; i-- {
		if err := c.verifySeal(ctx, plan.sets, i); err != nil {
			var te tempError
			if errors.As(err, &te) {
				res.Result, res.Reason = TempError, cleanReason(err.Error())
				return res
			}
			return fail("ARC-Seal i=%d: %v", i, err)
		}
	}
	res.Result = Pass
	return res
}

func (c *Checker) verifyAMS(ctx context.Context, fields []dkimcanon.Field, s arcSet, bodyHash []byte) error {
	tags := s.amsTags
	for _, t := range []string{"a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[t]; !ok {
			return fmt.Errorf("missing %s= tag", t)
		}
	}
	if _, ok := tags["l"]; ok {
		return errors.New("l= tag not allowed")
	}
	bh, err := base64.StdEncoding.DecodeString(tags["bh"])
	if err != nil {
		return fmt.Errorf("bh=: %v", err)
	}
	if !bytes.Equal(bh, bodyHash) {
		return errors.New("body hash did not verify")
	}
	headerCanon, _ := dkimcanon.ParseAlgorithms(tags["c"])
	h := sha256.New()
	picker := dkimcanon.NewPicker(fields)
	for _, name := range strings.Split(tags["h"], ":") {
		name = strings.TrimSpace(name)
		if strings.EqualFold(name, "ARC-Seal") {
			return errors.New("h= includes ARC-Seal")
		}
		if raw, ok := picker.Pick(name); ok {
			h.Write([]byte(dkimcanon.Header(raw, headerCanon)))
		}
	}
	self := strings.TrimRight(dkimcanon.Header(dkimcanon.StripSignature(s.ams.Raw), headerCanon), "\r\n")
	h.Write([]byte(self))
	return c.checkSignature(ctx, tags, h.Sum(nil))
}

// verifySeal checks ARC-Seal i over every ARC set up to i, in instance
// order, with relaxed header canonicalization (RFC 8617 §5.1.1).
func (c *Checker) verifySeal(ctx context.Context, sets []arcSet, i int) error {
	tags := sets[i-1].sealTags
	for _, t := range []string{"a", "b", "d", "s", "cv"} {
		if _, ok := tags[t]; !ok {
			return fmt.Errorf("missing %s= tag", t)
		}
	}
	if _, ok := tags["h"]; ok {
		return errors.New("h= tag not allowed in ARC-Seal")
	}
	h := sha256.New()
	for j := 1; j <= i; j++ {
		s := sets[j-1]
		h.Write([]byte(dkimcanon.RelaxedHeader(s.aar.Raw)))
		h.Write([]byte(dkimcanon.RelaxedHeader(s.ams.Raw)))
		if j < i {
			h.Write([]byte(dkimcanon.RelaxedHeader(s.seal.Raw)))
		}
	}
	self := strings.TrimRight(dkimcanon.RelaxedHeader(dkimcanon.StripSignature(sets[i-1].seal.Raw)), "\r\n")
	h.Write([]byte(self))
	return c.checkSignature(ctx, tags, h.Sum(nil))
}

func (c *Checker) checkSignature(ctx context.Context, tags map[string]string, digest []byte) error {
	sig, err := base64.StdEncoding.DecodeString(tags["b"])
	if err != nil {
		return fmt.Errorf("b=: %v", err)
	}
	key, err := c.fetchKey(ctx, tags["d"], tags["s"])
	if err != nil {
		return err
	}
	return key.verify(tags["a"], digest, sig)
}
