import Foundation
import Migration
import Support

extension InstanceConfig {
    /// `[database] migrate_command`, `pending_command`, `pending_format`, `command_timeout_seconds`:
    /// both commands or neither (a deploy with nothing pending must not snapshot).
    /// `table`: `database` for `[database]`, `database.N` for the Nth `[[database]]`.
    static func migrationCommand(_ toml: TOMLSubset, file: String, table: String = "database") throws -> MigrationCommand? {
        let key = { (name: String) in "\(table).\(name)" }
        let migrate = try toml.string(key("migrate_command"))
        let pending = try toml.string(key("pending_command"))
        let line = toml.line(of: key("migrate_command")) ?? toml.line(of: key("pending_command")) ?? toml.line(of: key("pending_format")) ?? 1
        guard let migrate else {
            if pending != nil || toml.line(of: key("pending_format")) != nil || toml.line(of: key("command_timeout_seconds")) != nil {
                throw TOMLSubset.error(file, line, "keys '\(key("pending_command"))', 'pending_format' and 'command_timeout_seconds' need '\(key("migrate_command"))' (the framework's migrate command)")
            }
            return nil
        }
        guard !migrate.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw TOMLSubset.error(file, line, "key '\(key("migrate_command"))' is empty")
        }
        guard let pending, !pending.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw TOMLSubset.error(file, line, "key '\(key("migrate_command"))' needs '\(key("pending_command"))' too (e.g. \"python manage.py showmigrations --plan\"): it tells a deploy with nothing to do, which takes no snapshot")
        }
        var format = PendingFormat.detect(pending)
        if let text = try toml.string(key("pending_format")) {
            guard let named = PendingFormat(rawValue: text) else {
                throw TOMLSubset.error(file, toml.line(of: key("pending_format")) ?? line,
                                       "key '\(key("pending_format"))': '\(text)' is not one of \(PendingFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            format = named
        }
        if try toml.string(key("seed_sql")) != nil {
            throw TOMLSubset.error(file, toml.line(of: key("seed_sql")) ?? line, "keys '\(key("seed_sql"))' and '\(key("migrate_command"))' cannot be used together: the framework builds its own database")
        }
        return MigrationCommand(migrate: migrate, pending: pending, format: format,
                                timeout: .seconds(try toml.int(key("command_timeout_seconds"), range: 1...86_400) ?? 600))
    }
}
