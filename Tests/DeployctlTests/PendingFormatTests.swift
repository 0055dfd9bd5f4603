import Foundation
@testable import Migration
import Testing

/// `pending_command` output as the frameworks print it, read by its format; anything else is
/// refused with the line named, never guessed.
@Suite("pending formats")
struct PendingFormatTests {
    @Test("Django's showmigrations --plan: '[ ]' lines are pending, '[X]' applied, in order")
    func django() throws {
        let output = "[X]  contenttypes.0001_initial\n[X]  shop.0001_initial\n[ ]  shop.0002_category\n[ ]  shop.0003_product_sku\n"
        #expect(try PendingFormat.django.parse(output) == ["shop.0002_category", "shop.0003_product_sku"])
        #expect(try PendingFormat.django.parse("[X]  shop.0001_initial\n").isEmpty)
    }

    @Test("Rails' db:migrate:status: 'down' rows are pending; the database line, header and dashes are skipped")
    func rails() throws {
        let output = """

            database: storage/production.sqlite3

             Status   Migration ID    Migration Name
            --------------------------------------------------
               up     20240101000000  Create users
              down    20240102000000  Add email to users

            """
        #expect(try PendingFormat.rails.parse(output) == ["20240102000000 Add email to users"])
    }

    @Test("Alembic's current: '<rev> (head)' is nothing pending; a revision without it, or none, is pending")
    func alembic() throws {
        #expect(try PendingFormat.alembic.parse("a4 (head)\n").isEmpty)
        #expect(try PendingFormat.alembic.parse("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\na2\n") == ["a2 → head"])
        #expect(try PendingFormat.alembic.parse("") == ["base → head"])
    }

    @Test("plain: one name per line, blank lines ignored, nothing is nothing pending")
    func plain() throws {
        #expect(try PendingFormat.plain.parse("0001_a\n\n0002_b\n") == ["0001_a", "0002_b"])
        #expect(try PendingFormat.plain.parse("\n").isEmpty)
    }

    @Test("a line not in the format is refused with its number and text", arguments: [
        (PendingFormat.django, "0001_tier\n", 1, "0001_tier"),
        (PendingFormat.django, "[X]  shop.0001_initial\nSystem check identified some issues:\n", 2, "System check identified some issues:"),
        (PendingFormat.rails, "database: db.sqlite3\nrake aborted!\n", 2, "rake aborted!"),
        (PendingFormat.alembic, "Traceback (most recent call last):\n", 1, "Traceback (most recent call last):"),
        (PendingFormat.plain, "0001_a\nbad\u{1b}[31mcolour\n", 2, "bad\u{1b}[31mcolour"),
    ])
    func unreadable(format: PendingFormat, output: String, number: Int, line: String) throws {
        do {
            _ = try format.parse(output)
            Issue.record("\(format) read \(output.debugDescription)")
        } catch let bad as PendingOutputUnreadable {
            #expect(bad.number == number && bad.line == line)
        }
    }

    @Test("the format is detected from the command's text")
    func detect() {
        #expect(PendingFormat.detect("python3 manage.py showmigrations --plan") == .django)
        #expect(PendingFormat.detect("bin/rails db:migrate:status") == .rails)
        #expect(PendingFormat.detect("alembic -c app/alembic.ini current") == .alembic)
        #expect(PendingFormat.detect("sh app/pending.sh") == .plain)
    }

    @Test("{database} is replaced by the path quoted for the shell")
    func placeholder() {
        #expect(MigrationCommand.text("migrate --db {database}", database: "/srv/it's here.db") == "migrate --db '/srv/it'\\''s here.db'")
    }
}
