package parser

import (
	"regexp"
	"strings"
)

// attributions match the line a mail client puts above quoted history
// ("On <date>, <name> wrote:") in the languages clients most often use.
// Every form ends with a colon, which stripReply checks before trying them.
var attributions = regexp.MustCompile(`(?i)^(?:` + strings.Join([]string{
	`on\b.+\bwrote\s?:`,                   // English (Gmail, Apple Mail, Thunderbird)
	`am\b.+\bschrieb\b.*:`,                // German
	`le\b.+\ba écrit\s?:`,                 // French
	`el\b.+\bescribió\s?:`,                // Spanish
	`(?:il\b.+\b)?ha scritto\s?:`,         // Italian
	`.*\bha scritto\s?:`,                  // Italian (name first)
	`op\b.+\bschreef\b.*:`,                // Dutch
	`em\b.+\bescreveu\s?:`,                // Portuguese
	`(?:den|på)\b.+\bskrev\b.*:`,          // Swedish, Danish, Norwegian
	`.+\bskrev\s?:`,                       // Scandinavian (name first)
	`w dniu\b.+\bnapisał(?:\(a\)|a)?\s?:`, // Polish
	`.+(?:пишет|написал(?:\(а\)|а)?)\s?:`, // Russian
	`.+\b(?:kirjoitti|napsal(?:\(a\)|a)?|yazdı|έγραψε)\s?:`,
	`\d{4}年\d{1,2}月\d{1,2}日.*[:：]`, // Japanese, Chinese (Gmail)
	`(?:在)?.*写道\s?[:：]`,            // Chinese
	`.*寫道\s?[:：]`,                  // Chinese (traditional)
	`.*작성\s?[:：]`,                  // Korean
}, "|") + `)$`)

// attributionWords are the verbs (or date marks) every attribution form
// contains: a cheap filter before the regular expression.
var attributionWords = []string{"wrote", "schrieb", "écrit", "escribió", "scritto", "schreef", "escreveu", "skrev",
	"napisał", "пишет", "написал", "kirjoitti", "napsal", "yazdı", "έγραψε", "年", "写道", "寫道", "작성"}

func hasAttributionWord(s string) bool {
	s = strings.ToLower(s)
	for _, w := range attributionWords {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// originalMessage matches Outlook's and others' separator lines.
var originalMessage = regexp.MustCompile(`(?i)^(?:begin forwarded message:|-{2,}\s*(?:forwarded message|original message|ursprüngliche nachricht|message d'origine|mensaje original|messaggio originale|oorspronkelijk bericht|mensagem original|originalmeddelande|oprindelig meddelelse|opprinnelig melding|alkuperäinen viesti|исходное сообщение|wiadomość oryginalna|původní zpráva|原始邮件|元のメッセージ)\s*-{2,})$`)

// headerLine matches the first fields of a quoted header block (Outlook's
// "From: … Sent: … To: … Subject: …", also in other languages).
var (
	headerFrom  = regexp.MustCompile(`(?i)^\*?(?:from|de|von|van|da|från|fra|от|od|lähettäjä|发件人|寄件者|差出人|보낸 사람)\s?\*?\s?[:：]`)
	headerOther = regexp.MustCompile(`(?i)^\*?(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|à|objet|enviado|fecha|para|asunto|verzonden|aan|onderwerp|inviato|data|a|oggetto|assunto|skickat|till|ämne|sendt|til|emne|отправлено|дата|кому|тема|wysłano|do|temat|发送时间|收件人|主题|送信日時|宛先|件名|날짜|받는 사람|제목)\s?\*?\s?[:：]`)
	underscores = regexp.MustCompile(`^_{20,}$`)
	mobileSig   = regexp.MustCompile(`(?i)^(?:sent from my \w+|sent from (?:mail|outlook|yahoo mail|samsung mobile)\b.*|get outlook for (?:ios|android)|von meinem \w+ gesendet|envoyé de mon \w+|enviado desde mi \w+|inviato da \w+)\.?$`)
)

// stripReply returns the text a sender wrote in a reply, without quoted
// history, quote lines and signature, like Mailgun's stripped-text and
// Postmark's StrippedTextReply: it cuts at the first attribution line
// ("On … wrote:"), "-----Original Message-----" separator or quoted header
// block, removes lines quoted with ">", and cuts at a "-- " signature
// delimiter (RFC 3676 §4.3) or a trailing "Sent from my …" line.
func stripReply(text string) string {
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	cut := len(lines)
	for i := 0; i < len(lines) && cut == len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || len(l) > 600 {
			continue
		}
		switch {
		case originalMessage.MatchString(l):
			cut = i
		case underscores.MatchString(l) && i+1 < len(lines) && headerFrom.MatchString(strings.TrimSpace(nextNonBlank(lines, i+1))):
			cut = i
		case headerFrom.MatchString(l) && headerBlockFollows(lines, i+1):
			cut = i
		default:
			// An attribution may be wrapped over up to three lines.
			joined := l
			for j := i; j < len(lines) && j < i+3; j++ {
				if j > i {
					next := strings.TrimSpace(lines[j])
					if next == "" {
						break
					}
					joined += " " + next
				}
				if len(joined) <= 1000 && (strings.HasSuffix(joined, ":") || strings.HasSuffix(joined, "：")) &&
					hasAttributionWord(joined) && attributions.MatchString(joined) {
					cut = i
					break
				}
			}
		}
	}
	kept := make([]string, 0, cut)
	for _, l := range lines[:cut] {
		if strings.HasPrefix(strings.TrimLeft(l, " "), ">") {
			continue
		}
		kept = append(kept, l)
	}
	// Signature: the first "-- " delimiter line.
	for i, l := range kept {
		if strings.TrimRight(l, " \r") == "--" {
			kept = kept[:i]
			break
		}
	}
	// Trailing blank lines and mobile-client footers.
	for len(kept) > 0 {
		last := strings.TrimSpace(kept[len(kept)-1])
		if last == "" || mobileSig.MatchString(last) {
			kept = kept[:len(kept)-1]
			continue
		}
		break
	}
	// Collapse runs of blank lines left by removed quotes.
	out := kept[:0]
	blank := 0
	for _, l := range kept {
		if strings.TrimSpace(l) == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, strings.TrimRight(l, " \r"))
	}
	for len(out) > 0 && strings.TrimSpace(out[0]) == "" {
		out = out[1:]
	}
	return strings.Join(out, "\n")
}

func nextNonBlank(lines []string, i int) string {
	for ; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "" {
			return lines[i]
		}
	}
	return ""
}

// headerBlockFollows reports whether at least one more quoted header field
// follows within the next few lines.
func headerBlockFollows(lines []string, i int) bool {
	for j := i; j < len(lines) && j < i+5; j++ {
		l := strings.TrimSpace(lines[j])
		if headerOther.MatchString(l) {
			return true
		}
	}
	return false
}
