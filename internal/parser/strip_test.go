package parser

import "testing"

// TestStripReply uses replies shaped like what clients send.
func TestStripReply(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"gmail, attribution wrapped over two lines",
			"Sounds good!\n\nOn Mon, Jan 8, 2024 at 9:15\u202fAM Jane Doe <\njane@example.com> wrote:\n\n> Are we still on?\n>\n> Jane\n",
			"Sounds good!"},
		{"apple mail",
			"Works for me.\n\n> On 8 Jan 2024, at 09:15, Jane Doe <jane@example.com> wrote:\n> \n> Are we still on?\n",
			"Works for me."},
		{"thunderbird german with signature",
			"Hallo Max,\n\npasst.\n\nAm 03.01.2024 um 10:00 schrieb Max Mustermann:\n> Termin?\n\n-- \nErika\n",
			"Hallo Max,\n\npasst."},
		{"french gmail", "Merci !\n\nLe lun. 15 janv. 2024 à 10:00, Élodie <e@example.fr> a écrit :\n> Confirmé ?\n", "Merci !"},
		{"spanish", "Perfecto.\n\nEl lun, 15 ene 2024 a las 10:00, Ana (<ana@example.es>) escribió:\n> ¿Vienes?\n", "Perfecto."},
		{"italian", "Va bene.\n\nIl giorno lun 15 gen 2024 alle ore 10:00 Marco <m@example.it> ha scritto:\n> Ok?\n", "Va bene."},
		{"dutch", "Prima.\n\nOp ma 15 jan. 2024 om 10:00 schreef Jan <jan@example.nl>:\n> Goed?\n", "Prima."},
		{"portuguese", "Combinado.\n\nEm seg., 15 de jan. de 2024 às 10:00, João <j@example.br> escreveu:\n> Pode ser?\n", "Combinado."},
		{"swedish", "Låter bra.\n\nDen mån 15 jan. 2024 kl 10:00 skrev Sven <s@example.se>:\n> Ses?\n", "Låter bra."},
		{"polish", "Dziękuję.\n\nW dniu 15.01.2024 o 11:00, Jan Kowalski napisał(a):\n> Faktura.\n", "Dziękuję."},
		{"russian", "Спасибо.\n\n15.01.2024, 12:00, Иван Петров пишет:\n> Договор.\n", "Спасибо."},
		{"japanese", "了解です。\n\n2024年1月10日(水) 18:30 田中 太郎 <tanaka@example.jp>:\n> 何時？\n", "了解です。"},
		{"chinese", "收到。\n\n在 2024年1月15日 星期一 09:30，李四 写道：\n> 报告？\n", "收到。"},
		{"outlook original message",
			"Thanks, will do.\n\nRegards,\nPriya\n\n-----Original Message-----\nFrom: Mark <mark@vendor.example>\nSent: Friday, January 5, 2024 4:55 PM\nSubject: Contract\n\nPlease sign.\n",
			"Thanks, will do.\n\nRegards,\nPriya"},
		{"outlook header block with underscores",
			"Approved.\n\n________________________________\nFrom: Anna Müller <anna@kunde.example>\nSent: Monday, January 8, 2024 9:12 AM\nTo: Jörg\nSubject: Budget\n\nOK?\n",
			"Approved."},
		{"outlook header block, german",
			"Erledigt.\n\nVon: Anna Müller <anna@kunde.example>\nGesendet: Montag, 8. Januar 2024 09:12\nAn: Jörg\nBetreff: Budget\n",
			"Erledigt."},
		{"interleaved answers keep the answers",
			"See inline.\n\n> Question one?\nAnswer one.\n\n> Question two?\nAnswer two.\n",
			"See inline.\n\nAnswer one.\n\nAnswer two."},
		{"signature without quotes", "Short note.\n\n-- \nJohn Smith\nACME Corp\n", "Short note."},
		{"mobile footer", "On my way.\n\nSent from my iPhone\n", "On my way."},
		{"get outlook footer", "Yes.\n\nGet Outlook for iOS\n", "Yes."},
		{"nothing to strip", "Just a message.\nTwo lines.", "Just a message.\nTwo lines."},
		{"a From: line in prose is kept", "From: my point of view this is fine.\nThanks", "From: my point of view this is fine.\nThanks"},
		{"forwarded content is cut at its header block",
			"FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Bob <bob@example.com>\nDate: Mon, Jan 8, 2024\nSubject: Numbers\n\nQ4 numbers.\n",
			"FYI, see below."},
		{"apple mail forward", "Look at this.\n\nBegin forwarded message:\n\n> From: Bob <bob@example.com>\n", "Look at this."},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stripReply(tt.in); got != tt.want {
				t.Fatalf("stripReply:\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
