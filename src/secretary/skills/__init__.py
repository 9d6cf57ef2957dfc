"""The secretary's skills: calendar, to-dos and reminders, notes and memory."""
