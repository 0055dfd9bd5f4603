import Backup
import Foundation
import Support

/// The journal of a restore of a set of databases (`PreparedSetRestore`): written before the
/// first database is restored and after each, removed when the set is restored (or put back).
/// A restore killed between two databases leaves it: `status` reports it (2), and the next
/// deploy or restore of the instance puts the databases already restored back from the
/// `pre_restore` copies it names, so the set is as it was before that restore.
struct SetRestoreJournal: Codable, Sendable {
    /// The set being restored.
    var set: String
    var startedAt: Date
    /// Per database already restored: the `pre_restore` copy holding its state before.
    var restored: [String: String]
    /// The database being restored now, and the restore copies it had before: a copy not among
    /// them is the one this restore saved (written before its live file is replaced, so a kill
    /// at any moment is recovered).
    var restoring: String?
    var copiesBefore: [String]?
    /// The process restoring (its lock on the instance says whether it still runs).
    var pid: Int32 = getpid()

    enum CodingKeys: String, CodingKey {
        case set, restored, pid, restoring
        case startedAt = "started_at"
        case copiesBefore = "copies_before"
    }

    static func path(_ config: InstanceConfig) -> String { config.folder + "/.deployctl.restore.journal" }

    static func read(_ config: InstanceConfig) throws -> SetRestoreJournal? {
        guard let data = FileManager.default.contents(atPath: path(config)) else { return nil }
        do {
            return try JSON.decoder().decode(SetRestoreJournal.self, from: data)
        } catch {
            throw Failure(.journalUnreadable, "the restore journal \(path(config)) cannot be read: \(error)",
                          hint: "inspect it by hand; it records a set restore that was interrupted")
        }
    }

    func write(_ config: InstanceConfig) throws {
        try DurableFile.write(try JSON.encoder().encode(self), to: Self.path(config), replace: true)
    }

    static func remove(_ config: InstanceConfig) throws {
        unlink(path(config))
        try DurableFile.syncDirectory(containing: path(config))
    }

    /// Puts each database named in `restored` back from its `pre_restore` copy, last first, not
    /// stopped by signals (it is what makes the set whole again). Returns the databases put back
    /// and, for each that could not be, why.
    static func putBack(_ restored: [(database: InstanceContext, copy: String)]) -> (done: [String], failed: [String]) {
        var done = [String]()
        var failed = [String]()
        for (database, copy) in restored.reversed() {
            let name = database.config.databaseName ?? ""
            let steady = InstanceContext(runtime: database.runtime.uninterruptible, config: database.config)
            do {
                let store = steady.store
                let entry = try store.entry(named: copy)
                let request = RestoreRequest(instance: database.config.name, selection: .named(copy), target: .live, runHooks: false)
                _ = try RestorePlanner(steady.runtime).prepare(entry, request: request, instance: steady, store: store, lock: nil, passedOver: []).perform()
                done.append(name)
            } catch {
                failed.append("\(name): \(error) (its state before the restore is saved as \(copy))")
            }
        }
        return (done, failed)
    }

    /// Recovery: puts back what an interrupted set restore had restored, removes the journal,
    /// and says what it did; nil when there was none. The caller holds the instance lock.
    /// - Throws: `restore.put_back_failed` (2) when a database cannot be put back (the journal stays).
    static func recover(_ instance: InstanceContext, databases: [InstanceContext]) throws -> String? {
        guard let journal = try read(instance.config) else { return nil }
        let restored = databases.compactMap { database -> (database: InstanceContext, copy: String)? in
            guard let name = database.config.databaseName else { return nil }
            if let copy = journal.restored[name] { return (database, copy) }
            // Killed while this one was restored: the copy it saved, if it got that far (putting
            // back a database that was not yet replaced changes nothing).
            guard name == journal.restoring, let before = journal.copiesBefore else { return nil }
            let saved = database.store.entries().first { $0.label == "pre_restore" && !before.contains($0.name) }
            return saved.map { (database, $0.name) }
        }
        let (done, failed) = putBack(restored)
        guard failed.isEmpty else {
            throw Failure(.restorePutBackFailed, "the restore of set \(journal.set) was interrupted, and putting back the databases it had restored failed: \(failed.joined(separator: "; "))",
                          hint: "restore each named database's saved copy with 'deployctl restore \(instance.config.name) NAME --database DB --yes'")
        }
        try remove(instance.config)
        let note = "the restore of set \(journal.set) was interrupted" + (done.isEmpty ? " before it changed a database" : "; put back as they were: \(done.joined(separator: ", "))")
        instance.runtime.events(.fact("recovered: \(note)"))
        return note
    }
}

extension SetRestoreJournal {
    /// The restore copies the journal may need: a database's copy named in `restored`, and, for
    /// the database being restored, every restore copy (its own is not known by name yet).
    func needs(_ database: String, in store: BackupStore) -> [String: String] {
        var needed = [String: String]()
        if let copy = restored[database] { needed[copy] = "an unfinished set restore puts it back" }
        if database == restoring {
            for entry in store.entries() where entry.label == "pre_restore" { needed[entry.name] = "an unfinished set restore may put it back" }
        }
        return needed
    }
}
